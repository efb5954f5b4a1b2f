"""No Docker engine runs here, so the compose file is checked by reading it: each
app service's command is a script the image contains, and every variable it sets
for the app is one the settings read."""

import re
from pathlib import Path

import yaml
from django.conf import settings

DOCKER = Path(settings.BASE_DIR) / "docker"


def _compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _variables_read_by_settings():
    names = set()
    for source in (Path(settings.BASE_DIR) / "config" / "settings").glob("*.py"):
        text = source.read_text()
        names.update(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'required\("([A-Z][A-Z0-9_]*)"\)', text))
    return names


def _app_services(compose):
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "contactcenter:latest"
    }


def test_every_app_service_command_is_a_script_in_the_image():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    services = _app_services(_compose())

    assert set(services) == {"migrate", "web", "worker", "beat"}
    for name, service in services.items():
        command = service["command"][0]
        assert command.startswith("/app/docker/"), name
        script = DOCKER / Path(command).name
        assert script.exists(), f"{name}: {script} is missing"
        assert script.stat().st_mode & 0o111, f"{name}: {script} is not executable"
        assert Path(command).name in dockerfile, f"{name}: the image does not copy {script.name}"


def test_every_variable_compose_sets_is_read_by_the_settings():
    read = _variables_read_by_settings() | {"DJANGO_SETTINGS_MODULE"}

    for name, service in _app_services(_compose()).items():
        unknown = set(service["environment"]) - read
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_production_required_variables_are_set_by_compose():
    production = (Path(settings.BASE_DIR) / "config/settings/production.py").read_text()
    required = set(re.findall(r'required\("([A-Z0-9_]+)"\)', production))

    for name, service in _app_services(_compose()).items():
        assert required <= set(service["environment"]), name


def test_start_scripts_name_commands_that_exist():
    for script in DOCKER.glob("*.sh"):
        text = script.read_text()
        assert text.startswith("#!/bin/sh")
        assert "set -eu" in text
        for command in re.findall(r"^\s*(?:exec\s+)?(\w+)\s", text, flags=re.MULTILINE):
            assert command in {"set", "exec", "python", "gunicorn", "celery"}, (script, command)
