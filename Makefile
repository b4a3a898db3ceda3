# Groundwork — the two commands a newcomer needs:
#   make run    install everything, start Postgres+pgvector, Redis, migrate, seed a demo, run web + worker + beat
#   make test   install everything, start the services the tests need, run lint, type checks and the test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS_DIR := .data/tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS_DIR)/bin/uv)
RUN := $(UV) run --frozen
export UV_PROJECT_ENVIRONMENT := .venv
export PYTHONUNBUFFERED := 1

.PHONY: help install run test test-only lint browser clean

help:
	@echo "make run   - install and run the whole product (web, worker, beat, Postgres, Redis)"
	@echo "make test  - install and run lint, type checks and the test suite"

$(TOOLS_DIR)/bin/uv:
	@# uv installs the locked environment; bring it in without touching the system Python.
	python3 -m venv $(TOOLS_DIR) || (echo "python3 -m venv failed: install your distribution's python3-venv package"; exit 1)
	$(TOOLS_DIR)/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: wheels ship no .pyc, and where PYTHONDONTWRITEBYTECODE is set (as on this
# CI's machines) every process would compile every import again. Measured without / with it:
# `import litellm` 13.3 / 7.5 s, a worker's ping 7.2 / 3.2 s (bench/results/worker_start.json),
# the test suite 16:44 / 13:40. Compiling takes ~60 s on a fresh install, ~3 s after.
install: $(if $(shell command -v uv 2>/dev/null),,$(TOOLS_DIR)/bin/uv)
	$(UV) sync --frozen --compile-bytecode

run: install
	$(RUN) python -m devtools.runner

# Debian's Chromium for the browser tests (Playwright's own browser download cannot be used here).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$GROUNDWORK_CHROMIUM" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium not found: browser tests will be skipped (install Debian's 'chromium' package to run them)."; \
	fi

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .
	GROUNDWORK_DATA_DIR=.data/test $(RUN) python manage.py makemigrations --check --dry-run

test-only:
	GROUNDWORK_DATA_DIR=.data/test $(RUN) pytest

test: install browser lint test-only

clean:
	-$(RUN) python -c "from pathlib import Path; from devtools import embedded_services as e; [ (e.stop_postgres(Path(d)), e.stop_redis(Path(d))) for d in ('.data', '.data/test') ]"
