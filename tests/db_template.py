"""The test database as a copy of a migrated template, for the test suite only.

Migrating a new test database takes about 15 s of Python (Django renders the model
states of some 80 migrations), in every pytest process: each xdist worker, then
`make test`'s own-process run. The first process to need it migrates as usual and
keeps a copy of the result, the template; the others, in this run and in later
ones, create their database from it (CREATE DATABASE ... TEMPLATE, under a second)
and Django's migrate then finds nothing to apply.

The template's name carries a digest of everything a migrated database comes from:
the source of the project's apps and settings (models, migrations and the code
their data migrations call), the migrations and models of the other installed apps,
Django's version and the database settings. Any change there names another
template, migrated afresh; older templates of this database name are dropped.
An advisory lock (per database name) makes the processes wait for one another.
"""

import contextlib
import hashlib
import sys
from pathlib import Path

import django
import psycopg
from django.apps import apps
from django.conf import settings
from django.db import connections


def _sources():
    """The files a migrated database is made from, as (name, path): all of the
    project's apps and settings, the models and migrations of the others."""
    base = Path(settings.BASE_DIR).resolve()
    roots = [("project", base, base / "config")]
    for app in apps.get_app_configs():
        path = Path(app.path).resolve()
        if path.is_relative_to(base) and "site-packages" not in path.parts:
            roots.append(("project", base, path))
        else:
            roots.extend((app.name, path, p) for p in (path / "migrations", path / "models.py"))
            roots.extend((app.name, path, p) for p in path.glob("models/"))
    for label, top, root in sorted(set(roots)):
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            if "__pycache__" not in path.parts:
                yield f"{label}:{path.relative_to(top)}", path


def template_name():
    database = settings.DATABASES["default"]
    digest = hashlib.sha256()
    digest.update(f"{django.__version__} {sys.version_info[:2]}".encode())
    digest.update(repr(sorted((k, repr(v)) for k, v in database.items() if k != "TEST")).encode())
    for name, path in _sources():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"tpl_{database['NAME'][:40]}_{digest.hexdigest()[:12]}"


class Template:
    """Held from before the test database is created until after: the lock, and
    whether this process made the template."""

    def __init__(self):
        database = settings.DATABASES["default"]
        self.name = template_name()
        self.admin = psycopg.connect(
            dbname="postgres",
            host=database["HOST"] or None,
            port=database["PORT"] or None,
            user=database["USER"] or None,
            password=database["PASSWORD"] or None,
            autocommit=True,
        )
        # The processes of runs on this database name wait for one another.
        self.admin.execute("SELECT pg_advisory_lock(hashtext(%s))", [self._prefix()])
        self.exists = self._exists(self.name)
        if self.exists:
            database.setdefault("TEST", {})["TEMPLATE"] = self.name

    def _prefix(self):
        return self.name.rsplit("_", 1)[0] + "_"

    def _exists(self, name):
        found = self.admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return found.fetchone() is not None

    def keep(self, test_database):
        """After the test database was migrated: copy it as the template when there
        is none, and drop the templates of earlier sources."""
        if self.exists:
            return
        connections.close_all()  # a template is copied with no one connected
        quote = connections["default"].ops.quote_name
        self.admin.execute(f"CREATE DATABASE {quote(self.name)} TEMPLATE {quote(test_database)}")
        stale = self.admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND datname <> %s",
            [self._prefix(), self.name],
        ).fetchall()
        for (name,) in stale:
            with contextlib.suppress(psycopg.Error):  # in use: a later run drops it
                self.admin.execute(f"DROP DATABASE {quote(name)}")

    def release(self):
        self.admin.close()  # ends the session, and the lock with it
