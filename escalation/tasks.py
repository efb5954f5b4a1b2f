"""Thin task wrappers on the escalations queue: ids in, a service call, nothing else;
and the inbound task's call of the same service (process_inbound_here)."""

import structlog
from celery import Task, shared_task

from contactcenter import savepoints
from contactcenter.retry import is_transient_database_error, retry_or_give_up
from escalation import services

logger = structlog.stdlib.get_logger(__name__)


class _FailsafeOnFailure(Task):
    """When processing an inbound message fails for good (retries used up, or an
    error no retry can fix), the message goes to a person instead of nowhere."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        interaction_id = kwargs.get("interaction_id") or (args[0] if args else None)
        if interaction_id:
            services.interaction_processing_failed(
                interaction_id=interaction_id, error=exc.__class__.__name__
            )


@shared_task(
    base=_FailsafeOnFailure,
    bind=True,
    name="escalation.tasks.process_inbound",
    ignore_result=True,
    max_retries=6,
)
def process_inbound(self, interaction_id):
    # A lost connection or a deadlock is transient; processing is idempotent, so the
    # retry is safe. Anything else is a bug: raised at once, it fails visibly.
    try:
        services.interaction_process(interaction_id=interaction_id)
    except Exception as exc:
        retry_or_give_up(self, exc, permanent=not is_transient_database_error(exc), base=2, cap=300)


def process_inbound_here(interaction):
    """Escalation's processing of an inbound message inside the inbound task that
    received it (see escalation.receivers): one task per message instead of two, and
    the interaction the task read is not read again. When it fails, the message
    goes to process_inbound on the escalations queue, with its retries and the
    failsafe: nothing is committed by a failed try (one transaction), and the run
    row makes a second processing a no-op. When that publish fails too, the error
    fails the inbound task before it marks the message processed, so the channels
    sweeper queues it again. In the inbound task's optimistic attempt (no savepoint
    around this processing) the failure is raised instead: the task tries again."""
    try:
        services.interaction_process(interaction_id=interaction.pk, interaction=interaction)
    except Exception as exc:
        if savepoints.in_optimistic_attempt():
            raise
        logger.warning(
            "inbound_processing_queued",
            interaction_id=str(interaction.pk),
            error=exc.__class__.__name__,
        )
        process_inbound.apply_async(args=[str(interaction.pk)], retry=False)


@shared_task(name="escalation.tasks.sweep_sla_breaches", ignore_result=True)
def sweep_sla_breaches():
    services.sla_breaches_sweep()
