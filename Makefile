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

# Tests marked own_process pass alone but time out when they follow the rest of the
# suite in one xdist process (a worker that never sees its tasks; the cause is not yet
# found), so they run after the parallel run in a process of their own.
test: venv
	$(BIN)/pytest -n auto -m "not own_process"
	$(BIN)/pytest -m own_process

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
