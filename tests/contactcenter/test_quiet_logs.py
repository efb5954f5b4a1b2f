"""Logs a person can read on `make run`: routine periodic work at DEBUG, readable
console lines when asked for (a terminal, by default), no broker warning on every
connection; JSON stays the default elsewhere."""

import json
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings

from contactcenter.logging import RoutineAtDebug


def _record(name, msg, args=None, level=logging.INFO):
    record = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    record.args = args
    return record


def _task_line(task_name, logger="celery.app.trace"):
    return _record(logger, "Task %(name)s[%(id)s] succeeded", {"name": task_name, "id": "x"})


def test_beat_ticks_and_the_audit_sealer_are_dropped_at_info():
    routine = RoutineAtDebug(level="INFO")

    assert not routine.filter(_record("celery.beat", "Scheduler: Sending due task seal (x)"))
    assert not routine.filter(_task_line("compliance.tasks.seal_audit_chain"))
    assert not routine.filter(
        _task_line("compliance.tasks.seal_audit_chain", "celery.worker.strategy")
    )
    assert routine.filter(_task_line("channels_app.tasks.outbound_send"))
    assert routine.filter(_record("celery.beat", "beat: Starting..."))


@pytest.mark.parametrize(
    "task", ["channels_app.tasks.inbound_process", "channels_app.tasks.inbound_drain"]
)
def test_the_per_message_tasks_received_and_succeeded_lines_are_dropped_not_its_retries(task):
    from celery.app.trace import LOG_RECEIVED, LOG_RETRY, LOG_SUCCESS

    routine = RoutineAtDebug(level="INFO")
    context = {"name": task, "id": "x"}

    assert not routine.filter(_record("celery.worker.strategy", LOG_RECEIVED, context))
    assert not routine.filter(_record("celery.app.trace", LOG_SUCCESS, context))
    # Celery logs a retry at INFO too: it is kept, at INFO.
    retry = _record("celery.app.trace", LOG_RETRY, {**context, "exc": "OperationalError"})
    assert routine.filter(retry)
    assert retry.levelname == "INFO"
    # Another task's lines are untouched.
    assert routine.filter(_record("celery.app.trace", LOG_SUCCESS, {**context, "name": "x.y"}))


def test_a_routine_tasks_failure_keeps_its_level():
    failure = _task_line("compliance.tasks.seal_audit_chain")
    failure.levelno, failure.levelname = logging.ERROR, "ERROR"

    assert RoutineAtDebug(level="INFO").filter(failure)
    assert failure.levelname == "ERROR"


def test_at_debug_the_routine_lines_are_kept_as_debug_lines():
    record = _task_line("compliance.tasks.seal_audit_chain")

    assert RoutineAtDebug(level="DEBUG").filter(record)
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")


def test_every_task_demotes_the_lines_of_all_tasks():
    assert not RoutineAtDebug(level="INFO", every_task=True).filter(
        _task_line("channels_app.tasks.outbound_send")
    )


_LOG_ONE_LINE = (
    "import django, logging; django.setup(); "
    "from config.celery import app; "
    "app.connection_for_write().info(); "
    "logging.getLogger('channels_app.services').info('outbound_status')"
)


def _local_process(**env):
    return subprocess.run(
        [sys.executable, "-c", _LOG_ONE_LINE],
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=60,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "CONTACTCENTER_READ_DEV_ENV": "false",
            "FIELD_ENCRYPTION_KEYS": os.environ.get(
                "FIELD_ENCRYPTION_KEYS", "k1:" + "A" * 43 + "="
            ),
            "BLIND_INDEX_KEY": os.environ.get("BLIND_INDEX_KEY", "B" * 43 + "="),
            "AUDIT_MAC_KEYS": os.environ.get("AUDIT_MAC_KEYS", "a1:" + "C" * 43 + "="),
            "DATABASE_URL": "sqlite:////tmp/unused-by-this-test.sqlite3",
            **env,
        },
    )


def test_local_settings_write_json_when_not_on_a_terminal_and_no_broker_warning():
    result = _local_process()

    assert result.returncode == 0, result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert line["event"] == "outbound_status" and line["level"] == "info"
    assert "No hostname" not in result.stderr


def test_log_format_console_writes_readable_lines():
    result = _local_process(LOG_FORMAT="console")

    assert result.returncode == 0, result.stderr
    assert "[info" in result.stderr and "outbound_status" in result.stderr
    assert not any(line.startswith("{") for line in result.stderr.splitlines())
