# huimin — the two commands: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROMTOOL := $(BIN)/promtool

.PHONY: run test lint e2e bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "huimin needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# promtool checks the alert rules and dashboard queries (tests/test_observability.py); where
# Debian's packages cannot be reached those three tests are skipped (CI requires them: .ci/run)
$(PROMTOOL): | $(STAMP)
	-ops/fetch-promtool $(BIN)

run: $(STAMP)  ## simulate, settle through the embedded broker, verify against the oracle
	$(BIN)/huimin run $(ARGS)

test: $(STAMP) $(PROMTOOL)  ## lint, the whole test suite (end-to-end tests start their own broker), and a check that the micro-benchmarks run
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --no-loadscope-reorder  # two at once, in groups: tests/conftest.py
	$(BIN)/pytest benchmarks/ --benchmark-disable -q

bench: $(STAMP)  ## a short benchmark: huimin bench (with the raw ceiling) and the micro-benchmarks
	$(BIN)/huimin bench --rates 25,50,100 --duration 15 --warmup 3 --out bench $(ARGS)
	$(BIN)/pytest benchmarks/ --benchmark-only -q

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

e2e: $(STAMP)  ## only the end-to-end tests (each starts its own embedded broker)
	$(BIN)/pytest -m e2e

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks build *.egg-info
