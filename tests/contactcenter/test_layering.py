"""contactcenter/ is the bottom layer: it imports no app and not the wiring (config/).

The scan reads every module's syntax tree, so an import inside a function counts as
much as one at the top, and so does importlib.import_module / import_string /
__import__ with a literal dotted path. Settings that name an app's function (as
LOG_REDACT_FUNCTION does) are config's choice, not an import of this layer.
"""

import ast
from pathlib import Path

from django.apps import apps
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
BOTTOM = "contactcenter"
DYNAMIC_IMPORTS = frozenset({"import_module", "import_string", "__import__"})


def forbidden_packages():
    """The top-level packages of this repository's apps other than contactcenter,
    and config: read from INSTALLED_APPS, so a new app is covered without edits."""
    names = {"config"}
    for app_config in apps.get_app_configs():
        path = Path(app_config.path).resolve()
        if path.is_relative_to(ROOT) and not path.is_relative_to(ROOT / ".venv"):
            top = app_config.name.split(".")[0]
            if top != BOTTOM:
                names.add(top)
    return names


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def imported_modules(source):
    """(line, module) for each absolute import and each dynamic import of a literal."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) in DYNAMIC_IMPORTS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def layer_violations(package_dir, forbidden):
    found = []
    for path in sorted(Path(package_dir).rglob("*.py")):
        for line, module in imported_modules(path.read_text()):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(package_dir.parent)}:{line} imports {module}")
    return found


def test_the_forbidden_set_names_every_app_and_config():
    assert forbidden_packages() >= {
        "config",
        "channels_app",
        "patients",
        "compliance",
        "escalation",
        "reminders",
        "reporting",
        "understanding",
        "workspace",
        "fhir",
    }
    assert BOTTOM not in forbidden_packages()


def test_contactcenter_imports_no_app_and_not_config():
    assert layer_violations(ROOT / BOTTOM, forbidden_packages()) == []


def test_the_scan_catches_each_kind_of_import(tmp_path):
    package = tmp_path / BOTTOM
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "fine.py").write_text(
        "import os\nfrom django.db import models\nfrom contactcenter.fields import X\n"
        "from . import sibling\nNAME = 'channels_app.models'\n"
    )
    (package / "top.py").write_text("from channels_app.models import Conversation\n")
    (package / "sub" / "inner.py").write_text(
        "def later():\n    import patients.selectors\n    from config import celery_app\n"
    )
    (package / "dynamic.py").write_text(
        "import importlib\nfrom django.utils.module_loading import import_string\n"
        "importlib.import_module('escalation.tasks')\nimport_string('workspace.views.inbox')\n"
    )
    assert layer_violations(package, forbidden_packages()) == [
        "contactcenter/dynamic.py:3 imports escalation.tasks",
        "contactcenter/dynamic.py:4 imports workspace.views.inbox",
        "contactcenter/sub/inner.py:2 imports patients.selectors",
        "contactcenter/sub/inner.py:3 imports config",
        "contactcenter/top.py:1 imports channels_app.models",
    ]
