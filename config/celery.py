"""The Celery app. Configuration comes from Django settings (CELERY_* names).

Tasks are queued on commit (`task.delay_on_commit`), take ids only, and are
acknowledged late so a worker lost mid-task leaves the message to be redelivered.
"""

import os
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("contactcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _declare_queues(sender, **kwargs):
    from django.conf import settings

    sender.conf.task_queues = [Queue(name) for name in settings.CELERY_TASK_QUEUES_NAMES]


# A connection that ended a task less than this long ago is not probed (Django's
# CONN_HEALTH_CHECKS: a SELECT 1 before its first statement) when the next task
# starts: during a burst that is one more round trip on every message. One idle for
# longer is probed, as a web request's is. Should the server go away in that second,
# the task's first statement fails and the connection is closed at its end; an
# inbound message is left unprocessed for the sweeper, a send is retried.
RECENTLY_USED_SECONDS = 1.0
# Kept on each connection wrapper (one per thread): a pool of threads probes each
# thread's connection by its own last task.
_TASK_ENDED_AT = "contactcenter_task_ended_at"


def _is_eager(kwargs):
    task = kwargs.get("task") or kwargs.get("sender")
    return getattr(getattr(task, "request", None), "is_eager", False)


@task_prerun.connect
def _database_before_task(**kwargs):
    """Each task starts as a request does: a connection past CONN_MAX_AGE, or one a
    failed statement may have broken, is closed; a healthy one is kept
    (CELERY_DB_REUSE_MAX stops the fixup from closing every connection each time).
    Eager tasks run inside their caller's transaction: left alone."""
    if _is_eager(kwargs):
        return
    database_before_task(now=time.monotonic())


@task_postrun.connect
def _database_after_task(**kwargs):
    if _is_eager(kwargs):
        return
    database_after_task(now=time.monotonic())


def database_before_task(*, now):
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
        ended = getattr(connection, _TASK_ENDED_AT, None)
        recent = ended is not None and now - ended < RECENTLY_USED_SECONDS
        if recent and connection.connection is not None:
            connection.health_check_done = True


def database_after_task(*, now):
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        # Closed when broken (probed after an error) or past CONN_MAX_AGE.
        connection.close_if_unusable_or_obsolete()
        setattr(connection, _TASK_ENDED_AT, None if connection.connection is None else now)


@task_prerun.connect
def _bind_task_context(task_id=None, task=None, **kwargs):
    import structlog

    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name if task else None)


@task_postrun.connect
def _clear_task_context(**kwargs):
    import structlog

    structlog.contextvars.clear_contextvars()
