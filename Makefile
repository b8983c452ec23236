# hookstream: `make run` starts everything on SQLite; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

# The versions installed are locked, with their hashes, in requirements/*.txt: `make lock`
# writes them (see there). run installs the runtime dependencies (run.txt); lint and test the
# test tools too (dev.txt: the same runtime pins, plus the dev extra); bench adds matplotlib.
REQ        := requirements
RUN_LOCKS  := pyproject.toml $(REQ)/bootstrap.txt $(REQ)/run.txt
DEV_LOCKS  := $(RUN_LOCKS) $(REQ)/dev.txt
# A stamp per level, named by the checksum of the files it was installed from (their content,
# not their times): a changed lock or pyproject.toml installs again; a second make run does not.
sum         = $(shell cat $(1) 2>/dev/null | cksum | cut -d' ' -f1)
RUN_STAMP  := $(VENV)/.installed-run-$(call sum,$(RUN_LOCKS))
DEV_STAMP  := $(VENV)/.installed-dev-$(call sum,$(DEV_LOCKS))
BENCH_STAMP := $(VENV)/.installed-bench-$(call sum,$(DEV_LOCKS) $(REQ)/bench.txt)

.PHONY: run test lint install install-dev lock clean bench bench-senders bench-ingest drills

# The venv, with the locked pip and setuptools (no `--upgrade pip` to whatever is newest).
define bootstrap
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hookstream needs Python 3.11 or newer (found %s); set PYTHON=python3.11" % sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(REQ)/bootstrap.txt
endef

# hookstream itself is not hashed: editable, without dependencies (the lock brought them),
# built by the locked setuptools already in the venv.
define install_project
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
endef

$(RUN_STAMP):
	$(bootstrap)
	$(PIP) install --quiet --require-hashes -r $(REQ)/run.txt
	$(install_project)
	@rm -f $(VENV)/.installed-run-* $(VENV)/.installed-[0-9]*
	@touch $@

# dev.txt holds run.txt's pins, so it stands for a runtime install as well.
$(DEV_STAMP):
	$(bootstrap)
	$(PIP) install --quiet --require-hashes -r $(REQ)/dev.txt
	$(install_project)
	@rm -f $(VENV)/.installed-run-* $(VENV)/.installed-dev-* $(VENV)/.installed-[0-9]*
	@touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

# A local trial: SQLite in ./var, webhooks to local receivers allowed.
run: $(RUN_STAMP)
	HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true $(BIN)/hookstream migrate
	HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true exec $(BIN)/hookstream serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench drills
	$(BIN)/mypy

# Test files run in TEST_PROCESSES processes (one file's tests stay together, in order). Most
# tests wait on servers and child processes, so one more process than the cores this make may
# use keeps them busy (3 on 2 cores), from 2 up to 8.
TEST_PROCESSES ?= $(shell $(PYTHON) -c 'import os; print(min(8, max(2, len(os.sched_getaffinity(0)) + 1)))')

test: lint
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile --durations=15

# The charts need matplotlib (the bench extra, bench.txt): installed on first use; without it
# the benchmarks still run and say that the charts were skipped.
bench: $(DEV_STAMP)
	@test -f $(BENCH_STAMP) || { $(PIP) install --quiet --require-hashes -r $(REQ)/bench.txt && rm -f $(VENV)/.installed-bench-* && touch $(BENCH_STAMP); } || echo "matplotlib could not be installed: charts will be skipped"
	$(BIN)/python -m bench $(BENCH_ARGS)

# HTTP clients as webhook senders (bench/senders.py, about 20 s): aiohttp, hookstream's, against
# pyreqwest, pycurl, a client on httptools and a bare asyncio protocol. Only aiohttp and httptools
# are hookstream's dependencies; the others are reported "not installed" unless SENDERS_PYTHON is a
# venv that has them (bench/senders.py's docstring shows one). SENDERS_ARGS='--requests 50000'.
SENDERS_PYTHON ?= $(BIN)/python

bench-senders: $(DEV_STAMP)
	$(SENDERS_PYTHON) -m bench.senders $(SENDERS_ARGS)

# Ingest's parts against alternatives (bench/ingest_alternatives.py, about 20 s): validation
# against msgspec, uvicorn against granian; neither is a dependency: ALT_PYTHON is a venv that
# has them (the module's docstring shows one), else they are reported "not installed".
ALT_PYTHON ?= $(BIN)/python

bench-ingest: $(DEV_STAMP)
	$(ALT_PYTHON) -m bench.ingest_alternatives $(ALT_ARGS)

drills: $(DEV_STAMP)
	$(BIN)/python -m drills $(DRILLS_ARGS)

# Writes requirements/*.txt with uv (pip compile --universal --generate-hashes, PyPI only:
# uv reads none of pip's configuration). Pins already in the files are kept unless a change of
# pyproject.toml needs otherwise: LOCK_ARGS=--upgrade moves every pin to the newest allowed,
# LOCK_ARGS='--upgrade-package NAME' one. run.txt is resolved first; dev.txt is constrained to
# it and bench.txt to dev.txt, so the three agree on every package they share.
LOCK_TOOL := $(VENV)/lock-tool
UV        := $(LOCK_TOOL)/bin/uv
UV_STAMP  := $(LOCK_TOOL)/.installed-$(call sum,$(REQ)/lock-tools.txt)
LOCK_PYTHON := 3.11
COMPILE    = $(UV) --no-config pip compile --quiet --universal --python-version $(LOCK_PYTHON) \
             --generate-hashes --no-header $(LOCK_ARGS)
LOCK_NOTE := '\# Resolved for CPython $(LOCK_PYTHON)+ (uv --universal: markers decide per platform);' \
             '\# installed and tested on Linux x86_64, CPython 3.11. Every file is from PyPI, with its sha256.'

# $(call lock_file,OUTPUT,WHAT,UV ARGUMENTS)
define lock_file
	$(COMPILE) $(3) -o $(1)
	@{ printf '%s\n' '# $(2)' '# Written by `make lock` (uv pip compile): do not edit by hand.' $(LOCK_NOTE); cat $(1); } > $(1).tmp
	@mv $(1).tmp $(1)
endef

$(UV_STAMP):
	@test -x $(LOCK_TOOL)/bin/python || $(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/python -m pip install --quiet --require-hashes -r $(REQ)/lock-tools.txt
	@rm -f $(LOCK_TOOL)/.installed-*
	@touch $@

lock: $(UV_STAMP)
	$(call lock_file,$(REQ)/lock-tools.txt,The lock tool (make lock installs it into $(LOCK_TOOL)).,$(REQ)/lock-tools.in)
	$(call lock_file,$(REQ)/bootstrap.txt,pip and setuptools: installed first into .venv by every make target.,$(REQ)/bootstrap.in)
	$(call lock_file,$(REQ)/run.txt,Runtime dependencies (pyproject.toml: dependencies): make run.,pyproject.toml)
	$(call lock_file,$(REQ)/dev.txt,Runtime and test tools (pyproject.toml: dependencies and the dev extra): make test.,pyproject.toml --extra dev -c $(REQ)/run.txt)
	$(call lock_file,$(REQ)/bench.txt,As dev.txt plus the bench extra (matplotlib): make bench.,pyproject.toml --extra dev --extra bench -c $(REQ)/dev.txt)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
