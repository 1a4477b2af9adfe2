# Two commands from a fresh clone: `make run` (embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := worker,jax,monitor,dev

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

test: install ## Lint, then the whole suite (TensorFlow backend), then the ML tests on JAX.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q -ra
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -ra -m ml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## The benchmark suite against PostgreSQL and Redis on this machine.
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
