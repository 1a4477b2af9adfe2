# Two commands from a fresh clone: `make run` (embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := worker,jax,monitor,dev
JAX_TEST_DB ?= postgresql+psycopg://postgres@127.0.0.1:5432/test_jax
OUTAGE_TEST_DB ?= postgresql+psycopg://postgres@127.0.0.1:5432/test_outage

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
	@# Two passes run beside the main one, each on a database, a Redis pair and a temporary
	@# folder of its own. The outage tests hold their own servers down for minutes, so they
	@# mostly wait. The ML tests on JAX run niced, so that they take only what the suite's
	@# processes leave over: the whole suite mostly waits on its processes.
	@mkdir -p var
	KERAS_BACKEND=tensorflow TEST_DATABASE_URL=$(OUTAGE_TEST_DB) TEST_REDIS_DBS=10,11 \
	  $(BIN)/python -m pytest -q -ra -m outage --durations=5 --basetemp=var/outage-tests \
	  tests/integration/test_outages.py > var/outage-tests.log 2>&1 & \
	outage=$$!; \
	KERAS_BACKEND=jax TEST_DATABASE_URL=$(JAX_TEST_DB) TEST_REDIS_DBS=12,13 \
	  nice -n 15 $(BIN)/python -m pytest -q -ra -m ml --basetemp=var/jax-tests > var/jax-tests.log 2>&1 & \
	jax=$$!; \
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -ra --durations=40 -m "not outage"; tf=$$?; \
	wait $$outage; ot=$$?; \
	wait $$jax; jx=$$?; \
	echo "--- Outage tests (var/outage-tests.log) ---"; cat var/outage-tests.log; \
	echo "--- ML tests on JAX (var/jax-tests.log) ---"; cat var/jax-tests.log; \
	test $$tf -eq 0 && test $$ot -eq 0 && test $$jx -eq 0

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
