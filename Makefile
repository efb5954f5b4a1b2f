PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Keys, migrations, demo data, then web + worker + beat: all in scripts/run_local.sh,
# which the end-to-end test runs in a fresh copy of the repository.
run: venv
	DJANGO_SETTINGS_MODULE=config.settings.local VENV=$(VENV) bash scripts/run_local.sh

# The canary test's worker subprocess once never answered its start-up ping inside
# the parallel run (it passes in a process of its own; the cause is not found yet), so
# it runs after the parallel run in a pytest process of its own.
test: venv
	$(BIN)/pytest -n auto -m "not own_process"
	$(BIN)/pytest -m own_process

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
