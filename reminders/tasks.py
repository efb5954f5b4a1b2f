"""Thin task wrappers: ids only, never PHI."""

from celery import shared_task

from contactcenter.queueing import enqueue_on_commit
from reminders.services import reminders_dispatch_due

# Below the soft time limit (240 s), so a backlog is worked through run after run
# instead of being cut off mid-batch.
DISPATCH_TIME_BUDGET_SECONDS = 50


@shared_task(name="reminders.tasks.dispatch_due_reminders", ignore_result=True)
def dispatch_due_reminders():
    """Beat, every minute. A run that stops at its time budget with reminders still
    due queues the next one at once rather than waiting for the next tick."""
    summary = reminders_dispatch_due(time_budget_seconds=DISPATCH_TIME_BUDGET_SECONDS)
    if summary.more:
        enqueue_on_commit(dispatch_due_reminders)
