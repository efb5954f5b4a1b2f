"""Thin task wrappers: load by id, call a service. Ids only, never PHI."""

import time
from datetime import timedelta

import structlog
from celery import shared_task
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from channels_app import inbound_queue, services
from channels_app.adapters import AdapterError, adapter_for
from channels_app.models import Callback, DeliveryAttempt, Interaction, OutboundMessage
from channels_app.signals import interaction_received
from contactcenter import savepoints, sql
from contactcenter.queueing import publish
from contactcenter.retry import retry_or_give_up

logger = structlog.stdlib.get_logger(__name__)

OUTBOUND_MAX_RETRIES = 6
# An agent is waiting for the callback to ring: a few quick retries, then it goes
# back to the queue with the reason.
CALLBACK_DIAL_MAX_RETRIES = 3


@shared_task(name="channels_app.tasks.inbound_process", ignore_result=True)
def inbound_process(interaction_id):
    """Process one stored inbound message: a task per message, on a broker other
    than Redis (channels_app.inbound_queue), and for tasks queued before the drain."""
    process_inbound_message(interaction_id)


@shared_task(name="channels_app.tasks.inbound_drain", ignore_result=True)
def inbound_drain(slot):
    """Process inbound messages taken off the list a batch at a time
    (channels_app.inbound_queue) until it is empty, then give the slot back. After
    DRAIN_SECONDS the task queues its successor on the same slot and ends, so that
    a worker serving other queues too takes their tasks in between.

    A message whose processing fails is logged and left unmarked, for the sweeper
    to hand over again; the batch goes on with the next."""
    deadline = time.monotonic() + inbound_queue.DRAIN_SECONDS
    while time.monotonic() < deadline:
        interaction_ids = inbound_queue.take(slot)
        if not interaction_ids:
            return
        for interaction_id in interaction_ids:
            try:
                process_inbound_message(interaction_id)
            except Exception as exc:
                logger.warning(
                    "inbound_processing_failed_in_drain",
                    interaction_id=interaction_id,
                    error=exc.__class__.__name__,
                )
                # A connection a failed statement broke is not used for the next
                # (outside a transaction: a worker's drain never runs in one).
                for connection in connections.all(initialized_only=True):
                    if not connection.in_atomic_block:
                        connection.close_if_unusable_or_obsolete()
    publish(inbound_drain, [slot])


def process_inbound_message(interaction_id):
    """Hand a stored inbound interaction to the apps above (sentiment, rules,
    reminders' replies). Receivers are idempotent; the row is marked processed
    only after they ran, so a crash leaves it for the sweeper (or the broker's
    redelivery: acks_late).

    A receiver may return a callable: it is called with the interaction here after
    every receiver has seen the message, before the mark. Escalation's processing
    (sentiment, rules, routing, understanding) runs that way, in this task, instead
    of one more task through the broker per message; it still comes after the
    reminders' and surveys' receivers, as it did when it was queued from here.

    Those callables and the mark run in one transaction, first as an optimistic
    attempt without the savepoints that isolate each part's failure
    (contactcenter.savepoints); when the attempt fails, nothing of it is committed,
    and they run again on the interaction read afresh, each part in its savepoint."""
    # The conversation for the receivers (a survey reply is matched on its address);
    # not the patient, whose two dozen columns escalation's processing reads again
    # with the conversation it locks, and hands to the interaction (one read, not two).
    # A fixed statement: compiling the select_related QuerySet cost more than it.
    interaction = sql.get_with_related(Interaction, "conversation", id=interaction_id)
    if interaction is None or interaction.processed_at is not None:
        return
    responses = interaction_received.send(sender=Interaction, interaction=interaction)
    afterwards = [then for _receiver, then in responses if callable(then)]
    try:
        with savepoints.optimistic():
            _process_and_mark(interaction, afterwards)
    except Exception as exc:
        # A part failed, and the attempt's transaction rolled back whole. The second
        # attempt starts from the database, not from objects the first one changed
        # (the instance may carry the processed mark escalation's claim set in the
        # rolled-back attempt: kept, it would stop this attempt's own mark).
        logger.info(
            "inbound_processing_retried_with_savepoints",
            interaction_id=str(interaction_id),
            error=exc.__class__.__name__,
        )
        interaction = sql.get_with_related(Interaction, "conversation", id=interaction_id)
        if interaction is not None and interaction.processed_at is None:
            _process_and_mark(interaction, afterwards)


def _process_and_mark(interaction, afterwards):
    # The mark commits with what runs afterwards: one commit, one WAL flush, a
    # message instead of two, which is what a busy database makes a worker wait on.
    # In the optimistic attempt escalation's claim may have set it already (on this
    # instance too: contactcenter.savepoints.in_optimistic_attempt).
    with transaction.atomic():
        for then in afterwards:
            then(interaction)
        if interaction.processed_at is None:
            sql.update_row(
                Interaction,
                interaction.pk,
                unless_set=["processed_at"],
                processed_at=timezone.now(),
            )


@shared_task(
    name="channels_app.tasks.outbound_send",
    bind=True,
    ignore_result=True,
    max_retries=OUTBOUND_MAX_RETRIES,
)
def outbound_send(self, outbound_id):
    outbound = services.outbound_claim(outbound_id=outbound_id)
    if outbound is None:
        return  # already sent, being sent by another worker, or failed
    started = time.perf_counter()
    try:
        result = adapter_for(outbound.channel).send(outbound)
    except AdapterError as exc:
        error = str(exc)
        services.delivery_attempt_record(
            outbound=outbound,
            started=started,
            outcome=DeliveryAttempt.Outcome.PERMANENT_ERROR
            if exc.permanent
            else DeliveryAttempt.Outcome.TRANSIENT_ERROR,
            error=error,
        )

        def give_up():
            services.outbound_mark_failed(outbound=outbound, error=error)
            logger.warning("outbound_failed", outbound_id=str(outbound.pk), error=error)

        retry_or_give_up(
            self,
            exc,
            permanent=exc.permanent,
            give_up=give_up,
            before_retry=lambda: services.outbound_release_for_retry(
                outbound=outbound, error=error
            ),
        )
        return
    services.delivery_attempt_record(
        outbound=outbound,
        started=started,
        outcome=DeliveryAttempt.Outcome.SENT,
        provider_status=result.provider_status,
    )
    services.outbound_mark_sent(
        outbound=outbound, provider_id=result.provider_id, provider_status=result.provider_status
    )
    logger.info("outbound_sent", outbound_id=str(outbound.pk), channel=outbound.channel)


LOCAL_REPORT_MAX_RETRIES = 10


@shared_task(
    name="channels_app.tasks.outbound_local_report",
    bind=True,
    ignore_result=True,
    max_retries=LOCAL_REPORT_MAX_RETRIES,
)
def outbound_local_report(self, outbox_id):
    """A local provider's delivery report (see adapters/local.py)."""
    if not services.local_outbox_report(outbox_id=outbox_id):
        if self.request.retries >= self.max_retries:
            logger.warning("local_outbox_unmatched", outbox_id=outbox_id)
            return
        raise self.retry(countdown=1)


@shared_task(name="channels_app.tasks.sweep_channels", ignore_result=True)
def sweep_channels():
    """Queue again what the broker never got (it was down at commit time), settle
    deliveries whose worker died mid-send, and forget expired webhook signatures."""
    now = timezone.now()
    grace = timedelta(seconds=settings.SWEEPER_GRACE_SECONDS)
    inbound_queue.hand_over(
        Interaction.objects.filter(
            processed_at__isnull=True,
            direction=Interaction.Direction.INBOUND,
            created_at__lt=now - grace,
        ).values_list("pk", flat=True)[:500]
    )
    for outbound_id in OutboundMessage.objects.filter(
        state=OutboundMessage.State.QUEUED, updated_at__lt=now - grace
    ).values_list("pk", flat=True)[:500]:
        outbound_send.apply_async(args=[str(outbound_id)], retry=False)
    stale = now - timedelta(seconds=settings.OUTBOUND_SENDING_STALE_SECONDS)
    for outbound in OutboundMessage.objects.filter(
        state=OutboundMessage.State.SENDING, updated_at__lt=stale
    )[:500]:
        services.outbound_settle_stale(outbound=outbound)
    for callback in Callback.objects.select_related("conversation").filter(
        status=Callback.Status.DIALLING, provider_call_sid="", dial_requested_at__lt=stale
    )[:500]:
        # Whether Twilio placed the call is unknown: back to the queue rather than
        # a second call to the patient; the agent asks again.
        services.callback_dial_failed(callback=callback, error="dial unknown: the worker was lost")
    services.webhook_signatures_purge(now=now)


@shared_task(name="channels_app.tasks.wake_snoozed", ignore_result=True)
def wake_snoozed():
    services.conversations_wake_snoozed()


@shared_task(name="channels_app.tasks.inbound_poll_imap", ignore_result=True)
def inbound_poll_imap():
    """Read new mail from every IMAP mailbox (beat, every minute). A mailbox that
    another run is still reading is skipped; one that fails is logged and the
    others are still read."""
    from channels_app.imap import imap_poll_all

    imap_poll_all()


@shared_task(
    name="channels_app.tasks.outbound_callback_dial",
    bind=True,
    ignore_result=True,
    max_retries=CALLBACK_DIAL_MAX_RETRIES,
)
def outbound_callback_dial(self, callback_id):
    """Ask Twilio to call the patient and bridge the agent's phone. Only a callback
    still dialling without a call is dialled, so a redelivered task calls once."""
    from channels_app.adapters.twilio_voice import place_callback_call

    callback = (
        Callback.objects.select_related("account", "conversation")
        .filter(pk=callback_id, status=Callback.Status.DIALLING, provider_call_sid="")
        .first()
    )
    if callback is None:
        return
    try:
        call_sid = place_callback_call(callback)
    except AdapterError as exc:
        error = str(exc)

        def give_up():
            services.callback_dial_failed(callback=callback, error=error)
            logger.warning("callback_dial_failed", callback_id=callback_id, error=error)

        retry_or_give_up(self, exc, permanent=exc.permanent, give_up=give_up)
        return
    services.callback_dialled(callback=callback, provider_call_sid=call_sid)


@shared_task(name="channels_app.tasks.outbound_missed_call_text", ignore_result=True)
def outbound_missed_call_text(call_id):
    services.missed_call_text_send(call_id=call_id)
