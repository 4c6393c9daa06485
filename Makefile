# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each sets up what it needs: a virtual environment in .venv with the project installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAGAC := $(VENV)/bin/sagac
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-full clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) system-deps
	@bash scripts/demo.sh

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	@rm -rf .typecheck && mkdir -p .typecheck/sagac
	@for f in sagac/*; do ln -s ../../$$f .typecheck/sagac/; done
	@for d in compiler runtime schemas server; do ln -s ../../$$d .typecheck/sagac/$$d; done
	$(VENV)/bin/mypy

unit: $(STAMP) system-deps
	$(PY) -m pytest -q

# Every benchmark, in quick mode (small sizes, one round: about two minutes); `bench-full` runs
# them at the sizes the docs quote (many minutes). Neither is part of `make test`. system-deps:
# bench/workers.py starts a throw-away PostgreSQL server.
BENCHES := bench/compile.py bench/runtime.py bench/journal.py bench/batch.py bench/startup.py bench/workers.py bench/timers.py

bench: $(STAMP) system-deps
	@set -e; for b in $(BENCHES); do echo "== $$b --quick"; $(PY) $$b --quick; done

bench-full: $(STAMP) system-deps
	@set -e; for b in $(BENCHES); do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .sagac

.PHONY: system-deps diagrams

# Debian packages outside Python (graphviz, chromium, postgresql), installed only when missing.
system-deps:
	@bash scripts/setup-system.sh

# docs/diagrams/<saga>.svg and .mmd for every example saga, drawn by the CLI.
diagrams: $(STAMP) system-deps
	@mkdir -p docs/diagrams
	@set -e; for f in sagas/*.yaml; do \
		name=$$(basename $$f .yaml); \
		$(SAGAC) diagram $$f --format mermaid -o docs/diagrams/$$name.mmd; \
		$(SAGAC) diagram $$f --format svg -o docs/diagrams/$$name.svg; \
		echo "docs/diagrams/$$name.svg"; \
	done
