"""Real servers a test starts, owns and stops: a PostgreSQL cluster of its own
(initdb and pg_ctl on a free port under a temporary directory; the shared server
on 5432 is never stopped) and the production web server (gunicorn) pointed at it.
A test may stop either at any moment, as an outage would."""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connection

GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, *, timeout, interval=0.05, what="the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def postgres_bin(name):
    """A PostgreSQL program from Debian's versioned directory (the newest), else PATH."""
    for directory in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin or on PATH")
    return found


def database_url_of(settings_dict):
    credentials = quote(settings_dict["USER"] or "", safe="")
    if settings_dict["PASSWORD"]:
        credentials += ":" + quote(settings_dict["PASSWORD"], safe="")
    host = settings_dict["HOST"] or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(settings_dict['NAME'], safe='')}"


def dump_test_database(*arguments):
    """pg_dump of the database this test runs on, as text."""
    db = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    return subprocess.run(
        [
            postgres_bin("pg_dump"),
            "--host",
            db["HOST"] or "127.0.0.1",
            "--port",
            str(db["PORT"] or 5432),
            "--username",
            db["USER"] or "postgres",
            *arguments,
            db["NAME"],
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


class PrivatePostgres:
    """A PostgreSQL cluster of this test alone. initdb refuses to run as root, so
    under root the cluster belongs to the `postgres` system user."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="cc-private-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self._user = {}
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._user = {"user": owner.pw_uid, "group": owner.pw_gid}

    def _run(self, *command):
        return subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.directory,
            **self._user,
        )

    def url(self, database):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database="postgres"):
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=2)

    def init(self):
        self._run(
            postgres_bin("initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self):
        self._run(
            postgres_bin("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--wait",
            "--options",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            "start",
        )
        return self

    def stop(self, mode="fast"):
        """`fast` ends every session at once (their transactions roll back), as a
        database that is shut down or fails over under traffic does."""
        if (self.data / "postmaster.pid").exists():
            self._run(postgres_bin("pg_ctl"), "--pgdata", str(self.data), "--mode", mode, "stop")

    def restore_from_test_database(self, database):
        """A copy of the test database (schema and committed rows) under `database`."""
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        dump = dump_test_database("--no-owner", "--no-privileges")
        subprocess.run(
            [postgres_bin("psql"), "--quiet", "--set", "ON_ERROR_STOP=1", self.url(database)],
            input=dump,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def destroy(self):
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class WebServer:
    """gunicorn serving the project, as docker/start-web.sh starts it."""

    def __init__(self, *, env, log_path):
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(GUNICORN),
                    "config.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "--threads",
                    "4",
                    "--timeout",
                    "30",
                ],
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, timeout=60, interval=0.2, what=f"gunicorn on port {self.port}")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.log()[-3000:]}")
        # The first request imports the URLconf and every view: done here, so that
        # a test's traffic starts on a warm server.
        try:
            with urllib.request.urlopen(f"{self.url}/health/", timeout=30) as response:  # noqa: S310 - loopback
                return response.status == 200
        except OSError:
            return False

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
