from datetime import timedelta

from celery import shared_task

from compliance import anchoring, services
from compliance.chain import seal_pending


@shared_task(name="compliance.tasks.seal_audit_chain", ignore_result=True)
def seal_audit_chain():
    """Seal the audit events committed since the last run (beat, every 5 seconds).

    Overlapping runs are harmless: sealers queue on their own lock, and a run that
    finds nothing pending returns at once. A run that sealed something publishes a
    signed checkpoint of the new head outside the database (compliance.anchoring).
    """
    sealed = seal_pending()
    if sealed:
        anchoring.checkpoint_publish_head()
    return sealed


@shared_task(name="compliance.tasks.nightly_anomaly_report", ignore_result=True)
def nightly_anomaly_report():
    """Store yesterday's anomaly findings (the practice's yesterday). Idempotent:
    a second run replaces the day's findings with the same ones."""
    day = services.practice_today() - timedelta(days=1)
    return len(services.anomalies_detect(day=day))


# A first purge on a years-old database can shred far more than the default five
# minutes allow; each batch commits, so a purge stopped by the limit loses nothing.
@shared_task(
    name="compliance.tasks.nightly_retention_purge",
    ignore_result=True,
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
)
def nightly_retention_purge():
    """Purge what is past retention; the purge leaves its own audit row."""
    counts = services.retention_purge()
    return {count.kind: count.count for count in counts}


@shared_task(name="compliance.tasks.verify_audit_chain", ignore_result=True)
def verify_audit_chain(run_id, user_id):
    """The compliance desk's "verify now": the whole chain, progress in the cache
    (compliance.verification)."""
    from compliance.verification import verification_run

    result = verification_run(run_id=run_id, user_id=user_id)
    return result.ok
