"""Reads that tolerate a second of lag, sent to a PostgreSQL streaming replica.

With `DATABASE_REPLICA_URL` set, the settings add a `replica` database and
`ReplicaRouter`. Code whose reads may be a moment behind the primary (KPI reports
and rollups, audit search and exports, access reports, the anomaly report) runs
them inside `replica_reads()`; every other read, every write and every migration
stays on `default`. Without the setting, or while the replica does not answer,
`replica_reads()` changes nothing and those reads go to the primary: a replica down
costs the primary some load, never an error. A replica found down is not asked
again for `RETRY_SECONDS`.
"""

import contextlib
import contextvars
import time

import structlog
from django.conf import settings
from django.db import DatabaseError, connections

logger = structlog.stdlib.get_logger(__name__)

REPLICA = "replica"
RETRY_SECONDS = 10.0

_use_replica = contextvars.ContextVar("use_replica", default=False)
_down_until = {"at": 0.0}


def configured():
    return REPLICA in settings.DATABASES


def _replica_answers():
    """Whether the replica takes a connection and answers a trivial query now."""
    if time.monotonic() < _down_until["at"]:
        return False
    connection = connections[REPLICA]
    try:
        if connection.connection is not None and connection.is_usable():
            return True
        connection.close()
        connection.ensure_connection()
        return True
    except DatabaseError as exc:
        _down_until["at"] = time.monotonic() + RETRY_SECONDS
        logger.warning("replica_unavailable", error=type(exc).__name__)
        with contextlib.suppress(DatabaseError):
            connection.close()
        return False


@contextlib.contextmanager
def replica_reads():
    """Reads inside go to the replica when one is configured and answers."""
    token = _use_replica.set(configured() and _replica_answers())
    try:
        yield
    finally:
        _use_replica.reset(token)


def reading_from_replica():
    return _use_replica.get()


def read_alias():
    """The alias raw SQL of a lag-tolerant read should run on."""
    return REPLICA if _use_replica.get() else "default"


class ReplicaReadsMixin:
    """A DRF view whose reads may lag: the whole request reads from the replica
    (writes, such as its audit row, still go to the primary)."""

    def dispatch(self, request, *args, **kwargs):
        with replica_reads():
            return super().dispatch(request, *args, **kwargs)


def stream_from_replica(rows):
    """A streamed response's rows are read after the view returned: keep reading
    them from the replica when the view did."""
    if not _use_replica.get():
        yield from rows
        return
    with replica_reads():
        yield from rows


class ReplicaRouter:
    """`replica` for reads inside replica_reads(), `default` for everything else."""

    def db_for_read(self, model, **hints):
        return REPLICA if _use_replica.get() else "default"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same rows.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"
