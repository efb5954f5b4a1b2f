"""Savepoints for the inbound task's transaction only when something fails.

The inbound task runs the processing of a message in one transaction: escalation's
rules and routing, then understanding's follow-up, each in a savepoint of its own, so
that one part's failure costs only that part (it is logged, or queued for a retry of
its own) and the rest commits. The two savepoints and their releases were four of a
message's sixteen statements, round trips the worker waits on, for failures that
nearly never happen.

So the task first makes an optimistic attempt (`optimistic()`): every `part()` is then
a plain block of the transaction, without a savepoint, and a part's failure is not
handled (`in_optimistic_attempt()`: the catcher raises it again), which ends the
attempt with nothing of it committed. The task then runs the processing again as
before, each part in its savepoint, where the failure is handled where it happens. A
message whose processing succeeds is processed exactly as it would have been with the
savepoints; one whose processing fails costs one more try.
"""

import contextlib
import contextvars

from django.db import connection, transaction

_optimistic = contextvars.ContextVar("contactcenter_savepoints_optimistic", default=False)


@contextlib.contextmanager
def optimistic():
    """An attempt without the parts' savepoints: the caller runs it in a transaction
    of its own and, when it raises, again outside this block."""
    token = _optimistic.set(True)
    try:
        yield
    finally:
        _optimistic.reset(token)


def part():
    """transaction.atomic() for a part of the processing that must fail alone: a
    savepoint inside a transaction, none in an optimistic attempt."""
    return transaction.atomic(savepoint=not (_optimistic.get() and connection.in_atomic_block))


def in_optimistic_attempt():
    """True in an optimistic attempt. Whoever catches a part's failure then raises it
    again instead of handling it, so that the attempt ends and the task runs the
    careful one; and whatever a part writes commits only if every part and the
    task's own writes succeed, so a part may do the task's last write for it (as
    escalation's claim does with the processed mark)."""
    return _optimistic.get()
