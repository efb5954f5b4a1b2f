"""The README stays true to the repository: its table of environment variables
names exactly those the code reads (found by scanning the source for reads), and it
points at no file outside the repository."""

import re
import subprocess
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
README = (ROOT / "README.md").read_text()

# A read of one variable, in Python: env.str("X"...), env.bool(...), os.environ.get("X"),
# os.environ["X"], os.getenv("X"), os.environ.setdefault("X", ...) and the settings'
# helpers that take the name (required("X"), provider("X", ...), _rate("X", ...)).
_PYTHON_READS = re.compile(
    r"""(?:\benv\.\w+|\brequired|\bprovider|\b_rate|os\.environ\.get|os\.getenv|"""
    r"""os\.environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|os\.environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
)
# In shell scripts and the compose file: ${X:-default}, ${X:?message}, ${X}.
_SHELL_READS = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
_SKIPPED = {".venv", "tests", "bench", "var", "node_modules", ".git"}


def _sources(*patterns):
    for pattern in patterns:
        for path in ROOT.rglob(pattern):
            if not _SKIPPED & set(path.relative_to(ROOT).parts):
                yield path


def variables_read_by_the_code():
    names = set()
    for path in _sources("*.py"):
        for groups in _PYTHON_READS.findall(path.read_text()):
            names.update(filter(None, groups))
    for path in _sources("*.sh", "compose.yaml"):
        names.update(_SHELL_READS.findall(path.read_text()))
    for line in (ROOT / "Makefile").read_text().splitlines():
        # `NAME ?= value`: make takes NAME from the environment when it is set.
        match = re.match(r"([A-Z][A-Z0-9_]*)\s*\?=", line)
        if match:
            names.add(match.group(1))
    return names


def variables_in_the_readme_tables():
    section = README.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_the_scan_finds_reads_of_every_kind():
    found = variables_read_by_the_code()

    # One of each form the scanner knows, so a broken pattern cannot pass silently.
    assert {"SECRET_KEY", "CONTACTCENTER_READ_DEV_ENV", "SMS_PROVIDER"} <= found  # env.*
    assert "DJANGO_SETTINGS_MODULE" in found  # os.environ.setdefault
    assert {"WORKER_QUEUES", "PORT", "POSTGRES_PASSWORD"} <= found  # shell and compose
    assert "VENV" in found  # Makefile


def test_every_variable_the_code_reads_is_in_the_readme():
    missing = variables_read_by_the_code() - variables_in_the_readme_tables()

    assert not missing, f"read by the code, not in the README's tables: {sorted(missing)}"


def test_the_readme_names_no_variable_the_code_does_not_read():
    unread = variables_in_the_readme_tables() - variables_read_by_the_code()

    assert not unread, f"in the README's tables, read by no code: {sorted(unread)}"


def test_the_readme_points_at_no_file_outside_the_repository():
    assert not re.search(r"(?<!\.)\.\./", README), "a relative path out of the repository"
    assert "/work/" not in README and "DESIGN.md" not in README
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for path in re.findall(r"`([\w./-]+\.(?:md|py|sh|yaml|toml))`", README):
        assert any(name == path or name.endswith("/" + path) for name in files), path
