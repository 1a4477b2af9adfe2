# Two commands from a fresh clone: `make run` (embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := worker,jax,monitor,dev
JAX_TEST_DB ?= postgresql+psycopg://postgres@127.0.0.1:5432/test_jax
OUTAGE_TEST_DB ?= postgresql+psycopg://postgres@127.0.0.1:5432/test_outage
EMBEDDED_TEST_DB ?= postgresql+psycopg://postgres@127.0.0.1:5432/test_embedded

.PHONY: install chromium run test test-ml-jax lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP) chromium

# The console's browser tests drive Debian's chromium (Playwright never downloads a browser):
# installed here when missing and we are root; elsewhere those tests skip (fail under CI=true).
chromium:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

run: install ## Run the API, a worker and the reconciler with no servers needed.
	$(BIN)/aigc up

test: install ## Lint, then the whole suite (TensorFlow backend) beside the ML tests on JAX.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@# The suite runs as four passes side by side, each on a database, Redis pairs and a
	@# temporary folder of its own: it mostly waits on its processes, so two cores carry them.
	@# - main: everything on PostgreSQL and Redis, on two xdist workers (whole files each).
	@# - embedded: the tests of the embedded defaults (SQLite, the filesystem broker).
	@# - outage: its tests hold their own servers down for minutes, so they mostly wait.
	@# - ML on JAX: niced, so that it takes only what the other passes leave over.
	@mkdir -p var
	KERAS_BACKEND=tensorflow TEST_DATABASE_URL=$(OUTAGE_TEST_DB) TEST_REDIS_DBS=10,11 \
	  $(BIN)/python -m pytest -q -ra -m outage --durations=5 --basetemp=var/outage-tests \
	  tests/integration/test_outages.py > var/outage-tests.log 2>&1 & \
	outage=$$!; \
	KERAS_BACKEND=jax TEST_DATABASE_URL=$(JAX_TEST_DB) TEST_REDIS_DBS=12,13 \
	  nice -n 15 $(BIN)/python -m pytest -q -ra -m ml --basetemp=var/jax-tests > var/jax-tests.log 2>&1 & \
	jax=$$!; \
	KERAS_BACKEND=tensorflow TEST_DATABASE_URL=$(EMBEDDED_TEST_DB) TEST_REDIS_DBS=8,9 \
	  $(BIN)/python -m pytest -q -ra -m "not outage" -k embedded --durations=10 \
	  --basetemp=var/embedded-tests > var/embedded-tests.log 2>&1 & \
	embedded=$$!; \
	KERAS_BACKEND=tensorflow TEST_REDIS_DBS=14,15,6,7 $(BIN)/python -m pytest -q -ra --durations=40 \
	  -m "not outage" -k "not embedded" -n 2 --dist loadfile; tf=$$?; \
	wait $$embedded; em=$$?; \
	wait $$outage; ot=$$?; \
	wait $$jax; jx=$$?; \
	echo "--- Embedded-default tests (var/embedded-tests.log) ---"; cat var/embedded-tests.log; \
	echo "--- Outage tests (var/outage-tests.log) ---"; cat var/outage-tests.log; \
	echo "--- ML tests on JAX (var/jax-tests.log) ---"; cat var/jax-tests.log; \
	test $$tf -eq 0 && test $$em -eq 0 && test $$ot -eq 0 && test $$jx -eq 0

lint: install ## Ruff, and the import layers (pyproject.toml's [tool.importlinter]).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## The benchmark suite against PostgreSQL and Redis on this machine.
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
