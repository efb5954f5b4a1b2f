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

    from contactcenter.connections import trust_recently_used

    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    # A connection that ended a task a moment ago is not probed again.
    trust_recently_used(now=now)


def database_after_task(*, now):
    from django.db import connections

    from contactcenter.connections import remember_use

    for connection in connections.all(initialized_only=True):
        # Closed when broken (probed after an error) or past CONN_MAX_AGE.
        connection.close_if_unusable_or_obsolete()
    remember_use(now=now)


@task_prerun.connect
def _bind_task_context(task_id=None, task=None, **kwargs):
    import structlog

    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task.name if task else None)


@task_postrun.connect
def _clear_task_context(**kwargs):
    import structlog

    structlog.contextvars.clear_contextvars()
