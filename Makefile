# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each sets up what it needs: a virtual environment in .venv with the project installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAGAC := $(VENV)/bin/sagac
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench schema-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/compile.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .sagac
