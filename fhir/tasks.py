"""Thin task wrappers: ids only, no PHI."""

from celery import shared_task

from contactcenter.retry import retry_or_give_up
from fhir import services


@shared_task(name="fhir.tasks.purge_expired", ignore_result=True)
def purge_expired():
    """Beat, hourly: expired SMART tokens, spent assertions and expired bulk
    exports (rows and files) are of no further use. An export or a subscription
    delivery the broker never got is queued again."""
    services.expired_tokens_purge()
    services.expired_exports_purge()
    for job_id in services.exports_never_started():
        bulk_export_run.delay(str(job_id))
    for delivery_id in services.deliveries_never_started():
        subscription_deliver.delay(delivery_id)


@shared_task(name="fhir.tasks.bulk_export_run", ignore_result=True)
def bulk_export_run(job_id):
    services.export_job_run(job_id=job_id)


@shared_task(
    name="fhir.tasks.subscription_deliver",
    bind=True,
    ignore_result=True,
    max_retries=services.DELIVERY_MAX_ATTEMPTS - 1,
)
def subscription_deliver(self, delivery_id):
    try:
        services.subscription_deliver(delivery_id=delivery_id)
    except services.DeliveryFailed as failed:
        reason = str(failed)
        retry_or_give_up(
            self,
            failed,
            permanent=failed.permanent,
            give_up=lambda: services.subscription_delivery_give_up(
                delivery_id=delivery_id, reason=reason
            ),
        )
