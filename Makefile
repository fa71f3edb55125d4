# Two commands for a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

# Runs on SQLite with DEBUG on; without SMARTCAR_CLIENT_ID the built-in Smartcar emulator answers.
run: $(VENV)/.installed
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --no-input
	DEBUG=$${DEBUG:-true} LOCAL_ORIGIN=http://$(HOST):$(PORT) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# The whole suite; browser tests run when Chromium is installed and say so when they skip.
test: $(VENV)/.installed-dev
	@test -x /usr/bin/chromium || echo "NOTE: /usr/bin/chromium is missing: the browser tests (tests/e2e) will be SKIPPED. Install it with: apt-get install chromium"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
