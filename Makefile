# Entry points. `make demo` and `make test` do all set-up themselves on a fresh
# machine with Python 3.11 and make: they create .venv and install from PyPI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all setup demo test bench mpy hil clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/backupctl demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/backupctl bench

clean:
	-$(BIN)/backupctl sim down 2>/dev/null
	rm -rf build .sim .pytest_cache

# Precompile the firmware for real boards into build/<role>/ and show what fits in flash.
mpy: $(STAMP)
	$(BIN)/python -m host_tools.build
