# huimin — the two commands: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROMTOOL_TRIED := $(VENV)/.promtool-tried

.PHONY: run test lint e2e bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "huimin needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# promtool checks the alert rules and dashboard queries (tests/test_observability.py); where
# Debian's packages cannot be reached those four tests are skipped (CI requires them: .ci/run).
# amtool checks the Alertmanager config. Tried once per venv, and not at all when both are
# on PATH.
$(PROMTOOL_TRIED): | $(STAMP)
	-@command -v promtool >/dev/null && command -v amtool >/dev/null || ops/fetch-promtool $(BIN)
	@touch $@

run: $(STAMP)  ## simulate, settle through the embedded broker, verify against the oracle
	$(BIN)/huimin run $(ARGS)

test: $(STAMP) $(PROMTOOL_TRIED)  ## lint and type check, the whole test suite (end-to-end tests start their own broker), and a check that the micro-benchmarks run
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n 3 --no-loadscope-reorder  # in three lanes on two cores: tests/conftest.py
	$(BIN)/pytest benchmarks/ --benchmark-disable -q

bench: $(STAMP)  ## a short benchmark: huimin bench (with the raw ceiling) and the micro-benchmarks
	$(BIN)/huimin bench --rates 25,50,100 --duration 15 --warmup 3 --out bench $(ARGS)
	$(BIN)/pytest benchmarks/ --benchmark-only -q

lint: $(STAMP)  ## ruff and mypy (the packages and tests/; pyproject.toml's [tool.mypy])
	$(BIN)/ruff check .
	$(BIN)/mypy

e2e: $(STAMP)  ## only the end-to-end tests (each starts its own embedded broker)
	$(BIN)/pytest -m e2e

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks build *.egg-info
