"""What every bench script shares: Django set up with the test settings on a
database of the script's own (created and migrated on first use, reused after),
and psycopg connections beside Django's for the floors.

A script runs from bench/, so it puts the project root on sys.path itself before
importing this module (see any script's first lines).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(default_database_url, **environ):
    """Test settings on DATABASE_URL (default: the script's own database), with
    any extra environment the script's workers must inherit."""
    os.environ.setdefault("DATABASE_URL", default_database_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ.update(environ)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _connection_params(dbname):
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {
        "dbname": dbname,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
    }
    return {k: v for k, v in params.items() if v}


def ensure_database():
    """Create the script's database unless it exists; True when created. CREATE
    DATABASE cannot run inside a transaction or on the database itself, so it
    goes through a separate autocommit connection to `postgres`."""
    import psycopg
    from django.conf import settings
    from psycopg import sql

    name = settings.DATABASES["default"]["NAME"]
    with psycopg.connect(**_connection_params("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
    return True


def migrate():
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def prepare_database():
    """ensure_database() then migrate(); True when the database was created."""
    created = ensure_database()
    migrate()
    return created


def raw_connection(**kwargs):
    """A psycopg connection of its own to the bench database, outside Django."""
    import psycopg
    from django.conf import settings

    return psycopg.connect(**_connection_params(settings.DATABASES["default"]["NAME"]), **kwargs)


def start_celery_worker(
    *, queues, concurrency, name, log_path=None, cwd=ROOT, environment=None, extra=()
):
    """A real Celery worker of the project in a process of its own, quiet (no gossip,
    mingle or heartbeat: one worker, nothing to agree with); its output goes to
    `log_path`, or to the script's own when None."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *extra,
    ]
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(command, cwd=cwd, env=environment, stdout=log, stderr=log)  # noqa: S603


def stop_process(process, timeout=30):
    """SIGTERM, then SIGKILL after `timeout` seconds; nothing if it already ended."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def inbound_unprocessed_since(since):
    """Inbound messages stored at or after `since` that no inbound task has marked
    processed yet: a drain's progress, polled while the worker runs. It reads the
    sweeper's partial index, so a poll costs the same whatever the backlog; a poll
    naming the backlog's ids (`pk__in` with thousands of UUIDs, every quarter second)
    took half a core from the worker it was measuring on two cores."""
    from channels_app.models import Interaction

    return Interaction.objects.filter(
        direction=Interaction.Direction.INBOUND, processed_at__isnull=True, created_at__gte=since
    ).count()
