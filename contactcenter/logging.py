"""Structured logs with the request id on every line.

Both structlog loggers and the standard library's (Django, Celery) go through the
same chain, so every line carries the context variables bound by the request
middleware or the task prerun hook: one JSON object per line by default, or an
aligned, readable line for a person at a terminal (LOG_FORMAT=console).
"""

import logging
import sys

import structlog

SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]

FOREIGN_PRE_CHAIN = SHARED_PROCESSORS

FORMATTER_PROCESSORS = [
    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    structlog.processors.JSONRenderer(),
]

CONSOLE_PROCESSORS = [
    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event_to=24),
]

# Celery's lines about one task, whose arguments name the task.
_TASK_LOGGERS = frozenset({"celery.app.trace", "celery.worker.strategy"})


class RoutineAtDebug(logging.Filter):
    """Turns the lines of routine periodic work into DEBUG lines: beat's "sending due
    task" ticks, and the received and succeeded lines of the tasks beat schedules
    (of every task with `every_task`, where the application's own lines tell what
    happened). Warnings and errors keep their level. A handler's filter sees a record
    after its logger's level check, so demoted lines are dropped here unless the
    configured level is DEBUG."""

    def __init__(self, level="INFO", every_task=False):
        super().__init__()
        self.keep_debug = logging.getLevelName(level) <= logging.DEBUG
        self.every_task = every_task
        self._routine_tasks = None

    def routine_tasks(self):
        if self._routine_tasks is None:
            from django.conf import settings

            self._routine_tasks = frozenset(
                entry["task"] for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values()
            )
        return self._routine_tasks

    def is_routine(self, record):
        if record.name == "celery.beat":
            return str(record.msg).startswith("Scheduler: Sending due task")
        if record.name in _TASK_LOGGERS and isinstance(record.args, dict):
            return self.every_task or record.args.get("name") in self.routine_tasks()
        return False

    def filter(self, record):
        if record.levelno != logging.INFO or not self.is_routine(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.keep_debug


def configure_structlog():
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name):
    return structlog.stdlib.get_logger(name)
