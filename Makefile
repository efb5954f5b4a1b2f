PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: venv
	$(BIN)/python scripts/generate_dev_keys.py var/dev.env
	# The filesystem broker's folders exist before the demo data queues its first tasks.
	mkdir -p var/broker/queue var/broker/control var/broker/processed
	DJANGO_SETTINGS_MODULE=contactcenter.settings.local $(BIN)/python manage.py migrate --noinput
	DJANGO_SETTINGS_MODULE=contactcenter.settings.local $(BIN)/python manage.py load_demo
	DJANGO_SETTINGS_MODULE=contactcenter.settings.local VENV=$(VENV) bash scripts/run_local.sh

test: venv
	$(BIN)/pytest -n auto

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
