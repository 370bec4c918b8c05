# Set-up and entry points. `make test` and `make demo` work on a fresh machine:
# they create .venv, install the pinned CPU build of torch first, then the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv test test-all demo bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: venv
	$(BIN)/ruff check isonet_pl cli tests bench
	$(BIN)/lint-imports
	$(BIN)/pytest -q

demo: venv
	$(BIN)/isonet-pl demo demo_out

bench: venv
	$(BIN)/python bench/perf/io.py

clean:
	rm -rf $(VENV) demo_out bench/out *.egg-info
