from celery import shared_task
from django.core.cache import cache

PROBE_KEY = "task-probe:{token}"


@shared_task(name="contactcenter.tasks.record_probe")
def record_probe(token):
    """Marks that a worker ran a task: used by the readiness tooling and tests."""
    cache.set(PROBE_KEY.format(token=token), "done", timeout=300)


@shared_task(name="contactcenter.tasks.purge_idempotency_keys")
def purge_idempotency_keys():
    from contactcenter.idempotency import idempotent_requests_purge

    return idempotent_requests_purge()
