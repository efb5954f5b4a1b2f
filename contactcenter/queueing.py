"""Queueing tasks so that a broker outage never fails the request that wrote the
data: the row is committed either way, and a sweeper queues what was missed."""

from functools import partial

import structlog
from django.db import transaction

logger = structlog.stdlib.get_logger(__name__)


def publish(task, args):
    """Queue `task(*args)` now; a broker outage is logged, not raised."""
    try:
        task.apply_async(args=args, retry=False)
    except Exception as exc:
        logger.warning(
            "enqueue_failed", task=task.name, error=exc.__class__.__name__, args_count=len(args)
        )


def enqueue_on_commit(task, *args):
    """Queue `task(*args)` once the current transaction commits (at once outside
    one). Arguments must be ids: task arguments never carry PHI."""
    transaction.on_commit(partial(publish, task, list(args)), robust=True)
