# trajtune: `make demo` runs the whole pipeline on the default model; `make test` runs the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TT      := $(BIN)/trajtune

.PHONY: install test demo clean-demo

install: $(VENV)/.installed

# torch is pinned first so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=64" wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(TT) validate data/examples/valid
