"""The one way a task retries: transient errors again after an exponential
backoff with jitter, permanent errors (and the last allowed try) never again,
ending in a failure someone can see.

Callers say which errors are permanent: an adapter says so on its AdapterError
(a rejected number, a bad request), and for database work a lost connection or
a deadlock (OperationalError, InterfaceError) is transient and anything else a
bug that retrying cannot fix.
"""

import random

from django.conf import settings
from django.db import InterfaceError, OperationalError

TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)
BACKOFF_CAP_SECONDS = 600


def backoff_seconds(retries, *, base=None, cap=BACKOFF_CAP_SECONDS):
    """base * 2**retries, capped, times a random factor in [0.5, 1) so workers that
    failed together do not retry together."""
    base = settings.OUTBOUND_RETRY_BASE_SECONDS if base is None else base
    return random.uniform(0.5, 1.0) * min(cap, base * 2**retries)  # noqa: S311 - jitter


def is_transient_database_error(exc):
    return isinstance(exc, TRANSIENT_DATABASE_ERRORS)


def retry_or_give_up(
    task, exc, *, permanent, give_up=None, before_retry=None, base=None, cap=BACKOFF_CAP_SECONDS
):
    """Called from a bound task's `except` block. A permanent error, or a transient
    one on the last allowed try, gives up: `give_up()` records the visible failure
    and the task returns, or without `give_up` the error is raised again (the task
    fails and its on_failure runs). A transient error runs `before_retry()` (hand
    the claimed row back) and raises Celery's Retry with the backoff."""
    if permanent or task.request.retries >= task.max_retries:
        if give_up is None:
            raise exc
        give_up()
        return
    if before_retry is not None:
        before_retry()
    raise task.retry(countdown=backoff_seconds(task.request.retries, base=base, cap=cap))
