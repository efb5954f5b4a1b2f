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

test: venv
	$(BIN)/pytest -n auto

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
