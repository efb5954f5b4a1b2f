"""Structured logs with the request id on every line.

Both structlog loggers and the standard library's (Django, Celery) go through the
same chain, so every line carries the context variables bound by the request
middleware or the task prerun hook: one JSON object per line by default, or an
aligned, readable line for a person at a terminal (LOG_FORMAT=console).

No line may carry PHI. Our own calls log ids, counts and error class names only;
what other libraries log is not ours to choose, so two processors take out what
can carry a patient's words or contact details: the messages of exceptions
(a provider's or a parser's error can quote an address, a number or a header),
in tracebacks and in the arguments of a library's message, and the data of
Celery's task lines (arguments, return value, exception text).
"""

import functools
import logging
import sys
import traceback

import structlog
from celery.app.trace import LOG_RETRY
from django.conf import settings
from django.utils.module_loading import import_string

# Arguments of Celery's task messages ("Task %(name)s[%(id)s] ...: %(exc)s") that
# carry data: the exception's repr keeps its class name, the others are withheld.
_EXCEPTION_ARGUMENTS = frozenset({"exc"})
_DATA_ARGUMENTS = frozenset({"return_value", "traceback", "args", "kwargs"})


def _outline(exc_info):
    """A traceback with its frames (file, line, function, source line) and the
    exceptions' class names, without their messages."""
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (exc_info.__class__, exc_info, exc_info.__traceback__)
    if not exc_info or exc_info[0] is None:
        return None
    parts = []
    exc = exc_info[1]
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = "".join(traceback.format_tb(exc.__traceback__))
        parts.append(
            f"Traceback (most recent call last):\n{frames}"
            f"{exc.__class__.__module__}.{exc.__class__.__qualname__} (message withheld)\n"
        )
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\nDuring handling of the above exception:\n".join(reversed(parts))


def format_exc_info_without_messages(logger, method_name, event_dict):
    """structlog's format_exc_info, less the exception messages."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        outline = _outline(exc_info)
        if outline:
            event_dict["exception"] = outline
    return event_dict


def _withheld(value, *, key=None):
    if isinstance(value, BaseException):
        return f"{value.__class__.__name__} (message withheld)"
    if key in _EXCEPTION_ARGUMENTS:
        return str(value).split("(", 1)[0] + " (message withheld)"
    if key in _DATA_ARGUMENTS:
        return "(withheld)"
    return value


def render_foreign_message_safely(logger, method_name, event_dict):
    """A standard-library record's message rendered again from its template, with
    exceptions reduced to their class and data arguments withheld."""
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if not args or record is None:
        return event_dict
    if isinstance(args, tuple) and len(args) == 1 and isinstance(args[0], dict):
        args = args[0]
    if isinstance(args, dict):
        safe = {key: _withheld(value, key=key) for key, value in args.items()}
    else:
        safe = tuple(_withheld(value) for value in args)
    try:
        event_dict["event"] = str(record.msg) % safe
    except (TypeError, ValueError, KeyError):
        event_dict["event"] = str(record.msg)
    return event_dict


# The free-text parts of a line: the message (a library's own, which can quote
# input) and a formatted traceback (its source lines can hold literals).
_FREE_TEXT_KEYS = ("event", "exception")


@functools.lru_cache(maxsize=4)
def _function_at(path):
    return import_string(path)


def redact_free_text(logger, method_name, event_dict):
    """A safety net under "no PHI in logs": phone numbers, e-mail addresses, dates,
    MRNs, SSNs and card numbers in the free-text parts of a line are replaced by
    placeholders. The function that does it is named by the LOG_REDACT_FUNCTION
    setting (config/settings/base.py: understanding.redaction.redact), so this bottom
    layer imports no app. Structured fields are ids by rule and are left alone.
    When the function cannot be had (settings not ready), the text is withheld."""
    for key in _FREE_TEXT_KEYS:
        value = event_dict.get(key)
        if isinstance(value, str) and value:
            try:
                redact = _function_at(settings.LOG_REDACT_FUNCTION)
                event_dict[key] = redact(value)
            except Exception:
                event_dict[key] = "[not logged: the text could not be redacted]"
    return event_dict


SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    format_exc_info_without_messages,
    redact_free_text,
]

FOREIGN_PRE_CHAIN = [render_foreign_message_safely, *SHARED_PROCESSORS]

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
# The tasks every inbound message runs: its own, or a drain that takes it with
# others (channels_app/inbound_queue.py; on a quiet line a drain task a message).
# Their received and succeeded lines are two JSON lines a task, written by the
# worker's parent and its child at a reminder wave's rate: they cost the drain
# about a tenth of its rate (bench/worker_drain.py at INFO against WARNING). What
# happened to a message is in the application's own lines (inbound_stored,
# intent_decided, escalations), and a retry or failure of the task keeps its line,
# as every task's does.
_PER_MESSAGE_TASKS = frozenset(
    {"channels_app.tasks.inbound_process", "channels_app.tasks.inbound_drain"}
)


class RoutineAtDebug(logging.Filter):
    """Turns the lines of routine periodic work into DEBUG lines: beat's "sending due
    task" ticks, and the received and succeeded lines of the tasks beat schedules
    and of the task every inbound message runs (of every task with `every_task`,
    where the application's own lines tell what happened). Warnings and errors keep
    their level. A handler's filter sees a record after its logger's level check, so
    demoted lines are dropped here unless the configured level is DEBUG."""

    def __init__(self, level="INFO", every_task=False):
        super().__init__()
        self.keep_debug = logging.getLevelName(level) <= logging.DEBUG
        self.every_task = every_task
        self._routine_tasks = None

    def routine_tasks(self):
        if self._routine_tasks is None:
            self._routine_tasks = frozenset(
                entry["task"] for entry in getattr(settings, "CELERY_BEAT_SCHEDULE", {}).values()
            )
        return self._routine_tasks

    def is_routine(self, record):
        if record.name == "celery.beat":
            return str(record.msg).startswith("Scheduler: Sending due task")
        if record.name in _TASK_LOGGERS and isinstance(record.args, dict):
            if record.msg == LOG_RETRY:
                return False  # Celery logs a retry at INFO: it says something failed.
            name = record.args.get("name")
            return self.every_task or name in _PER_MESSAGE_TASKS or name in self.routine_tasks()
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
