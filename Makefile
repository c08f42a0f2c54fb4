# Everything a fresh machine needs comes from here: `make test` and `make demo` set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint demo worker clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Runs the whole test suite (SQLite and the local PostgreSQL; time-skipping and dev server).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## The main job on the embedded defaults: dev server, SQLite, worker, demo portfolio.
demo: $(STAMP)
	$(BIN)/python -m cli.main demo $(DEMO_ARGS)

worker: $(STAMP)
	$(BIN)/python worker.py

clean:
	rm -rf $(VENV) data .pytest_cache
