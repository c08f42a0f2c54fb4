# Everything a fresh machine needs comes from here: `make test` and `make demo` set up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages: a CJK font for agreement PDFs, HarfBuzz's font subsetter (fast PDFs),
# pdftotext/pdftoppm for the document tests, chromium for the page tests (driven by
# Playwright, which downloads no browser), python3-venv for `python3 -m venv` on a bare
# Debian. Installed when missing (needs root).
SYSTEM_PACKAGES := fonts-noto-cjk libharfbuzz-subset0 poppler-utils chromium python3-venv
# Node.js and npm install and run Prism (the SMS contract tests): Debian's, when no `npm` is
# on the PATH (a Node.js from elsewhere that brings its own npm is used as it is).
NODE_PACKAGES := nodejs npm

# Prism serves a mock of Twilio's API from its OpenAPI description, for the SMS tests.
PRISM := .tools/prism/node_modules/.bin/prism

.PHONY: setup system-deps test lint demo worker web agreement-sample clean

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	command -v npm >/dev/null 2>&1 || missing="$$missing $(NODE_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $$missing >/dev/null 2>&1 \
	    || { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; }; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(PRISM):
	npm install --prefix .tools/prism --no-audit --no-fund --loglevel=error \
	  @stoplight/prism-cli@5.14.2

setup: system-deps $(STAMP) $(PRISM)

## Runs the whole test suite (SQLite and the local PostgreSQL; time-skipping and dev server).
test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## The main job on the embedded defaults: dev server, SQLite, worker, demo portfolio.
demo: setup
	$(BIN)/python -m cli.main demo $(DEMO_ARGS)

worker: setup
	$(BIN)/python worker.py

## The web app (Twilio webhooks) on uvicorn.
web: setup
	$(BIN)/python -m webapp.app

## A sample agreement (PDF and a PNG of its first page) under data/sample, to look at.
agreement-sample: setup
	$(BIN)/python -m cli.main sample-agreement --out data/sample
	pdftoppm -png -r 80 -f 1 -l 1 data/sample/agreement.pdf data/sample/page

clean:
	rm -rf $(VENV) data .pytest_cache .tools
