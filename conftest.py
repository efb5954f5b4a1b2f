"""Suite-wide set-up: stop at once, with a clear message, when PostgreSQL or
Redis does not answer, instead of failing every test one by one."""

import os
import socket
from urllib.parse import urlsplit

import pytest

_HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def _answers(url, default_port):
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return True, f"{host}:{port}"
    except OSError:
        return False, f"{host}:{port}"


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        return  # the controller already checked
    database_url = os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/contactcenter"
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    for name, url, port, variable in (
        ("PostgreSQL", database_url, 5432, "DATABASE_URL"),
        ("Redis", redis_url, 6379, "REDIS_URL"),
    ):
        ok, where = _answers(url, port)
        if not ok:
            pytest.exit(
                f"{name} does not answer at {where} ({variable}). The tests need it running.\n"
                f"Start it with: {_HOW_TO_START[name]}\n"
                f"or point {variable} at a running server.",
                returncode=3,
            )
