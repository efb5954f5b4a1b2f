"""Thin task wrappers on the escalations queue: ids in, a service call, nothing else."""

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from escalation import services


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
    name="escalation.tasks.process_inbound",
    ignore_result=True,
    # A lost connection or a deadlock is transient; processing is idempotent, so the
    # retry is safe. Anything else is a bug and fails visibly.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
)
def process_inbound(interaction_id):
    services.interaction_process(interaction_id=interaction_id)


@shared_task(name="escalation.tasks.sweep_sla_breaches", ignore_result=True)
def sweep_sla_breaches():
    services.sla_breaches_sweep()
