# hookstream: `make run` starts everything on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint install clean bench drills

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hookstream needs Python 3.11 or newer (found %s); set PYTHON=python3.11" % sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# A local trial: SQLite in ./var, webhooks to local receivers allowed.
run: $(STAMP)
	HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true $(BIN)/hookstream migrate
	HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true exec $(BIN)/hookstream serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench drills
	$(BIN)/mypy

# Test files run in TEST_PROCESSES processes (one file's tests stay together, in order).
TEST_PROCESSES ?= 3

test: lint
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

# The charts need matplotlib (the bench extra): installed on first use; without it the
# benchmarks still run and say that the charts were skipped.
bench: $(STAMP)
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]' || echo "matplotlib could not be installed: charts will be skipped"
	$(BIN)/python -m bench $(BENCH_ARGS)

drills: $(STAMP)
	$(BIN)/python -m drills $(DRILLS_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
