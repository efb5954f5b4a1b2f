"""Django's connection health check (CONN_HEALTH_CHECKS) probes a kept connection
with a SELECT 1 before the first statement of every request and every task: one
more round trip each, on a connection that finished a statement milliseconds ago
whenever the server is busy. A connection that ended a request or a task less than
RECENTLY_USED_SECONDS ago is taken as it is; one idle for longer is probed as
Django would. Should the server drop a connection within that second (a restart,
a failover), the next statement on it fails (the request answers 500, a task is
retried or its message left to the sweeper) and Django closes the connection at
the end of that request or task, as after any error.

Each connection wrapper belongs to one thread, so each thread's connection is
judged by its own last request or task. Celery's side is in config.celery."""

import time

from django.core.signals import request_finished, request_started
from django.db import connections

RECENTLY_USED_SECONDS = 1.0
_ENDED_AT = "contactcenter_work_ended_at"


def trust_recently_used(*, now):
    """Skip the probe of connections that ended their last request or task less than
    RECENTLY_USED_SECONDS before `now` (time.monotonic()). Runs after Django's own
    start-of-work check (close_old_connections), which asks for the probe."""
    for connection in connections.all(initialized_only=True):
        ended = getattr(connection, _ENDED_AT, None)
        if (
            ended is not None
            and now - ended < RECENTLY_USED_SECONDS
            and connection.connection is not None
        ):
            connection.health_check_done = True


def remember_use(*, now):
    """Note when each open connection ended its request or task; after Django's own
    end-of-work check, which closes a broken or expired one."""
    for connection in connections.all(initialized_only=True):
        setattr(connection, _ENDED_AT, None if connection.connection is None else now)


def _request_started(**kwargs):
    trust_recently_used(now=time.monotonic())


def _request_finished(**kwargs):
    remember_use(now=time.monotonic())


def connect_request_signals():
    # Connected after django.db's close_old_connections (at django.db's import), so
    # they run after it: the probe it asks for is skipped, and what it closes is
    # not remembered.
    request_started.connect(_request_started, dispatch_uid="contactcenter.trust_recent")
    request_finished.connect(_request_finished, dispatch_uid="contactcenter.remember_use")
