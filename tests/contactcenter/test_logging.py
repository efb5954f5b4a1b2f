"""What the production log formatter writes: one JSON object per line, without the
messages of exceptions (a provider's or a parser's error can quote an address, a
number or a header) and without the data Celery puts in its task lines."""

import json
import logging
import sys

import structlog
from django.conf import settings
from django.utils.module_loading import import_string

CANARY = "canary.patient.9c1e@example.com +14155550177"


def _production_formatter():
    config = settings.LOGGING["formatters"]["json"]
    return structlog.stdlib.ProcessorFormatter(
        processors=import_string(config["processors"].removeprefix("ext://")),
        foreign_pre_chain=import_string(config["foreign_pre_chain"].removeprefix("ext://")),
        pass_foreign_args=config["pass_foreign_args"],
    )


def _record(logger_name, msg, args, *, exc_info=None):
    return logging.LogRecord(logger_name, logging.ERROR, __file__, 1, msg, args, exc_info)


def _raised():
    try:
        try:
            raise LookupError(f"no patient for {CANARY}")
        except LookupError as inner:
            raise ValueError(f"refused {CANARY}") from inner
    except ValueError:
        return sys.exc_info()


def test_a_traceback_keeps_frames_and_classes_but_not_the_messages():
    line = _production_formatter().format(_record("django.request", "boom", (), exc_info=_raised()))

    entry = json.loads(line)
    assert CANARY not in line
    assert "ValueError (message withheld)" in entry["exception"]
    assert "LookupError (message withheld)" in entry["exception"]
    assert "in _raised" in entry["exception"]


def test_celery_task_lines_keep_the_task_and_withhold_its_data():
    context = {
        "name": "channels_app.tasks.outbound_send",
        "id": "0b7c",
        "description": "raised unexpected",
        "exc": f"ValueError('{CANARY}')",
        "traceback": f"Traceback ... {CANARY}",
        "args": f"['{CANARY}']",
        "kwargs": "{}",
        "return_value": CANARY,
    }
    failure = _production_formatter().format(
        _record("celery.app.trace", "Task %(name)s[%(id)s] %(description)s: %(exc)s", (context,))
    )
    success = _production_formatter().format(
        _record("celery.app.trace", "Task %(name)s[%(id)s] succeeded: %(return_value)s", (context,))
    )

    assert CANARY not in failure and CANARY not in success
    assert json.loads(failure)["event"] == (
        "Task channels_app.tasks.outbound_send[0b7c] raised unexpected: "
        "ValueError (message withheld)"
    )
    assert json.loads(success)["event"].endswith("succeeded: (withheld)")


def test_an_exception_passed_as_a_library_argument_is_reduced_to_its_class():
    line = _production_formatter().format(
        _record("kombu", "Connection failed: %s", (ConnectionError(CANARY),))
    )

    assert CANARY not in line
    assert json.loads(line)["event"] == "Connection failed: ConnectionError (message withheld)"


def test_our_own_logger_exception_is_formatted_without_its_message(caplog):
    logger = structlog.stdlib.get_logger("tests.logging")
    with caplog.at_level(logging.ERROR, logger="tests.logging"):
        try:
            raise RuntimeError(CANARY)
        except RuntimeError:
            logger.exception("sending_failed", outbound_id="42")

    [record] = [r for r in caplog.records if r.name == "tests.logging"]
    line = _production_formatter().format(record)
    assert CANARY not in line
    assert "RuntimeError (message withheld)" in json.loads(line)["exception"]


def test_a_tasks_log_lines_name_the_task_while_it_runs_and_not_after():
    """config.celery binds the task's id and name to every line logged while it runs
    (a worker's lines can then be told apart by task), and clears them after."""
    from celery.signals import task_postrun, task_prerun

    from channels_app.tasks import inbound_process

    task_prerun.send(sender=inbound_process, task_id="t-123", task=inbound_process)
    bound = structlog.contextvars.get_contextvars()
    task_postrun.send(sender=inbound_process, task_id="t-123", task=inbound_process)

    assert bound["task_id"] == "t-123"
    assert bound["task"] == "channels_app.tasks.inbound_process"
    assert "task_id" not in structlog.contextvars.get_contextvars()
