"""Writes for conversations and interactions: inbound ingestion (stored once,
threaded, matched to a patient), outbound replies with their delivery records,
and the state moves of a delivery."""

import functools
import math
import re
import time
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from channels_app import inbound_queue, live, signals
from channels_app.models import (
    Callback,
    CallDetail,
    ChannelAccount,
    Conversation,
    ConversationGroupObjectPermission,
    DeliveryAttempt,
    ImapCursor,
    Interaction,
    LocalOutboxMessage,
    OutboundMessage,
    RawEvent,
    WebhookSignatureUse,
)
from compliance.models import AuditEvent
from compliance.services import audit_record
from contactcenter import roles, sql
from contactcenter.access import grant_team_access, revoke_team_access
from contactcenter.blind_index import email_index, normalise_email, normalise_phone, phone_index
from contactcenter.business_hours import calendar_from_config
from contactcenter.models import Team
from contactcenter.queueing import enqueue_on_commit
from patients.models import Channel, ContactPoint
from patients.selectors import sole_patient_by_contact
from patients.services import consent_check

logger = structlog.stdlib.get_logger(__name__)

VIEW_CONVERSATION = "view_conversation"
PREVIEW_LENGTH = 120
# How far a signed webhook's timestamp may be from our clock.
WEBHOOK_SIGNATURE_TOLERANCE_SECONDS = 300

# Forward-only order of delivery states; a late or repeated callback never moves back.
_STATE_RANK = {
    OutboundMessage.State.QUEUED: 0,
    OutboundMessage.State.SENDING: 1,
    OutboundMessage.State.SENT: 2,
    OutboundMessage.State.DELIVERED: 3,
    OutboundMessage.State.UNDELIVERABLE: 3,
    OutboundMessage.State.FAILED: 3,
}


def _preview(text):
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_LENGTH else flat[: PREVIEW_LENGTH - 1] + "…"


def normalise_address(channel, address):
    """(normalised address, blind index) of a patient's phone or email."""
    if channel == Channel.EMAIL:
        value = normalise_email(address)
        return value, email_index(value)
    if channel in (Channel.SMS, Channel.VOICE):
        value = normalise_phone(address)
        return value, phone_index(value)
    return address, ""


def resolve_patient(*, channel, address):
    """The one patient with this phone or email, or None when there is none or
    several (a shared family line): staff resolve it, the system never guesses."""
    if channel == Channel.EMAIL:
        return sole_patient_by_contact(
            kind=ContactPoint.Kind.EMAIL, value_index=email_index(address)
        )
    if channel in (Channel.SMS, Channel.VOICE):
        return sole_patient_by_contact(
            kind=ContactPoint.Kind.PHONE, value_index=phone_index(address)
        )
    return None


def _grant_new_conversation(conversation, team):
    """The team's grant on a conversation created in this transaction: one INSERT
    (guardian's assign_perm would look the permission up and get_or_create the row
    under a savepoint, five statements, for a row that cannot exist yet), a fixed
    statement (compiling it cost more than running it, on every first message from
    an address). The permission's id is selected by the INSERT, never kept: a test
    database's flush creates the permissions again under new ids."""
    statement, group_field, object_field = _grant_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            [
                sql.param(group_field, team.group_id),
                sql.param(object_field, conversation.pk),
                ContentType.objects.get_for_model(Conversation).pk,
                VIEW_CONVERSATION,
            ],
        )
        if cursor.rowcount != 1:
            raise Permission.DoesNotExist(f"No {VIEW_CONVERSATION} permission to grant.")


@functools.lru_cache(maxsize=4)
def _grant_statement(vendor):
    """(INSERT of a team's grant on a conversation, the group and object fields)."""
    quote = connection.ops.quote_name
    grant = ConversationGroupObjectPermission._meta
    permission_field, group_field, object_field = (
        grant.get_field(name) for name in ("permission", "group", "content_object")
    )
    permission = Permission._meta
    statement = (
        f"INSERT INTO {quote(grant.db_table)} ({quote(permission_field.column)}, "  # noqa: S608
        f"{quote(group_field.column)}, {quote(object_field.column)}) "
        f"SELECT {quote(permission.pk.column)}, %s, %s FROM {quote(permission.db_table)} "
        f"WHERE {quote(permission.get_field('content_type').column)} = %s "
        f"AND {quote(permission.get_field('codename').column)} = %s"
    )
    return statement, group_field, object_field


def conversation_open(
    *,
    channel,
    team,
    account=None,
    patient=None,
    contact_address="",
    contact_index="",
    subject="",
    thread_key="",
    occurred_at=None,
    status=Conversation.Status.OPEN,
):
    """A new conversation, granted to its team. `status` resolved opens one that
    asks nothing of staff (the reminders' own thread): it is born resolved, so no
    one resolved it and conversation_resolved is not sent."""
    now = timezone.now()
    conversation = Conversation(
        status=status,
        resolved_at=now if status == Conversation.Status.RESOLVED else None,
        channel=channel,
        account=account,
        team=team,
        patient=patient,
        contact_address=contact_address,
        contact_index=contact_index,
        subject=subject[:300],
        thread_key=thread_key,
        last_interaction_at=occurred_at or now,
    )
    # A fixed statement, as create() would write it (sql.insert_row).
    sql.insert_row(conversation)
    _grant_new_conversation(conversation, team)
    return conversation


def _conversation_discard(conversation):
    """Undo a conversation opened in this transaction for a message that turned out
    to be a repeated delivery, so no empty conversation is left in the inbox."""
    ConversationGroupObjectPermission.objects.filter(content_object=conversation).delete()
    Conversation.objects.filter(pk=conversation.pk).delete()


def conversation_for_inbound(*, channel, account, address, subject="", occurred_at=None):
    """Join the open conversation of this sender on this practice account, or open
    a new one matched to the sender's patient when exactly one has the address."""
    return _conversation_for_inbound(
        channel=channel,
        account=account,
        address=address,
        subject=subject,
        occurred_at=occurred_at,
    )[0]


def _conversation_for_inbound(*, channel, account, address, subject="", occurred_at=None):
    """(conversation, opened now)."""
    normalised, index = normalise_address(channel, address)
    existing = open_conversation_locked(account=account.pk, contact_index=index, channel=channel)
    if existing is not None:
        return existing, False
    patient = resolve_patient(channel=channel, address=normalised)
    conversation = conversation_open(
        channel=channel,
        team=patient.team if patient else account.team,
        account=account,
        patient=patient,
        contact_address=normalised,
        contact_index=index,
        subject=subject,
        occurred_at=occurred_at,
    )
    return conversation, True


def open_conversation_locked(**match):
    """The latest unresolved conversation whose fields equal `match`, locked (FOR
    UPDATE where the database has it), or None. What

        Conversation.objects.select_for_update().filter(**match)
        .exclude(status=Conversation.Status.RESOLVED)
        .order_by("-last_interaction_at").first()

    runs, as a fixed statement: every inbound message asks it on the webhook's
    request (by account and address; a portal message by patient and thread), where
    compiling that QuerySet cost more than running it."""
    names = tuple(match)
    statement, selected, matched, status = _open_conversation_statement(connection.vendor, names)
    params = [sql.param(field, match[field.name]) for field in matched]
    rows = sql.fetch(
        statement, [*params, sql.param(status, Conversation.Status.RESOLVED)], selected
    )
    if not rows:
        return None
    return Conversation.from_db(connection.alias, [f.attname for f in selected], rows[0])


@functools.lru_cache(maxsize=8)
def _open_conversation_statement(vendor, names):
    """(statement, the selected fields, the matched fields, the status field)."""
    quote = connection.ops.quote_name
    meta = Conversation._meta
    selected = list(meta.concrete_fields)
    matched = [meta.get_field(name) for name in names]
    status, last = meta.get_field("status"), meta.get_field("last_interaction_at")
    conditions = [f"{quote(field.column)} = %s" for field in matched]
    statement = (
        f"SELECT {', '.join(quote(f.column) for f in selected)} FROM {quote(meta.db_table)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)} AND NOT ({quote(status.column)} = %s) "
        f"ORDER BY {quote(last.column)} DESC LIMIT 1"
    )
    if connection.features.has_select_for_update:
        statement += " FOR UPDATE"
    return statement, selected, matched, status


def _touch_conversation(conversation, interaction):
    """Move the conversation's last-activity columns forward and wake it."""
    changes = {
        "last_interaction_at": interaction.occurred_at,
        "last_direction": interaction.direction,
        "updated_at": timezone.now(),
    }
    if interaction.kind != Interaction.Kind.EVENT and interaction.body:
        changes["last_preview"] = _preview(interaction.body)
    if interaction.direction == Interaction.Direction.INBOUND:
        changes["last_inbound_at"] = interaction.occurred_at
        if conversation.status in (Conversation.Status.SNOOZED, Conversation.Status.PENDING):
            changes["status"] = Conversation.Status.OPEN
            changes["snoozed_until"] = None
    elif interaction.direction == Interaction.Direction.OUTBOUND and interaction.author_id:
        changes["last_staff_response_at"] = interaction.occurred_at
    if (
        conversation.last_interaction_at
        and interaction.occurred_at < conversation.last_interaction_at
    ):
        # A late delivery (an old message arriving now) does not move the inbox order back.
        for name in ("last_interaction_at", "last_direction", "last_preview"):
            changes.pop(name, None)
    for name, value in changes.items():
        setattr(conversation, name, value)
    sql.save_fields(conversation, list(changes))


def _interaction_added(interaction, conversation, *, received=False):
    """Every path that stores an interaction calls this in the transaction that
    stores it: `interaction_added` is sent at once (its receivers write in the same
    transaction, so what they record commits or rolls back with the interaction),
    and the live event is published after the commit. `received`: stored by
    inbound_record, so the inbound task will send interaction_received for it."""
    from channels_app.signals import interaction_added

    interaction_added.send(sender=Interaction, interaction=interaction, received=received)
    live.publish_on_commit(
        kind=live.MESSAGE,
        conversation_id=conversation.pk,
        team_id=conversation.team_id,
        interaction=str(interaction.pk),
    )


def _publish_conversation(conversation):
    live.publish_on_commit(
        kind=live.CONVERSATION, conversation_id=conversation.pk, team_id=conversation.team_id
    )


def _publish_delivery(outbound_id):
    """Open pages learn that a delivery moved; its conversation and team cost one read."""
    row = (
        OutboundMessage.objects.filter(pk=outbound_id)
        .values(
            "interaction_id", "interaction__conversation_id", "interaction__conversation__team_id"
        )
        .first()
    )
    if row is not None:
        live.publish_on_commit(
            kind=live.DELIVERY,
            conversation_id=row["interaction__conversation_id"],
            team_id=row["interaction__conversation__team_id"],
            interaction=str(row["interaction_id"]),
        )


@dataclass(frozen=True)
class Ingested:
    interaction: Interaction
    created: bool


def _existing_by_provider_id(channel, provider_id):
    return Interaction.objects.select_related("conversation").get(
        channel=channel, provider_id=provider_id
    )


def _insert_unless_duplicate(instance):
    """INSERT the row, or nothing when a unique constraint already holds its value:
    `ON CONFLICT DO NOTHING`, so the constraint decides, also between requests that
    race (the second waits for the first to commit, then inserts nothing), with no
    look-up before it and no savepoint around it. True when the row was inserted.
    No conflict target: every unique constraint of these models is one a repeated
    delivery must respect (the random UUID key never collides)."""
    return sql.insert_row(instance, skip_conflicts=True)


def inbound_record(
    *,
    channel,
    account=None,
    address,
    body,
    provider_id,
    occurred_at,
    source,
    raw_payload,
    kind=Interaction.Kind.MESSAGE,
    subject="",
    metadata=None,
    conversation=None,
    patient=None,
    opened=False,
):
    """Store one inbound message or call: its interaction and raw event (encrypted),
    in the caller's transaction (or one of its own), committed before the caller
    answers. The same provider id again stores nothing new, also when two
    deliveries race: the unique constraint interaction_unique_provider_id decides
    (see _insert_unless_duplicate). A conversation opened for a repeated delivery
    is undone: here when this opens it, and when the caller passes one it opened,
    with `opened=True`. Slow work is queued on commit. `account` (the practice's
    account the message was sent to) finds or opens the conversation, so it is
    needed only when no conversation is given.

    Per message on an open conversation: the conversation's row lock, the
    interaction, the raw event, the conversation's update (four statements)."""
    with transaction.atomic(savepoint=False):
        if conversation is None:
            conversation, opened = _conversation_for_inbound(
                channel=channel,
                account=account,
                address=address,
                subject=subject,
                occurred_at=occurred_at,
            )
        interaction = Interaction(
            conversation=conversation,
            patient_id=patient.pk if patient is not None else conversation.patient_id,
            channel=channel,
            kind=kind,
            direction=Interaction.Direction.INBOUND,
            body=body,
            provider_id=provider_id,
            occurred_at=occurred_at,
            metadata=metadata or {},
        )
        if not _insert_unless_duplicate(interaction):
            if opened:
                _conversation_discard(conversation)
            return Ingested(_existing_by_provider_id(channel, provider_id), created=False)
        # Fixed statements, as save() would write them: compiling the ORM's INSERT
        # and UPDATE cost more than running them, on every message received.
        sql.insert_row(
            RawEvent(
                source=source, provider_id=provider_id, payload=raw_payload, interaction=interaction
            )
        )
        _touch_conversation(conversation, interaction)
        _interaction_added(interaction, conversation, received=True)
    inbound_queue.hand_over_on_commit(interaction.pk)
    logger.info(
        "inbound_stored",
        channel=channel,
        kind=kind,
        interaction_id=str(interaction.pk),
        conversation_id=str(interaction.conversation_id),
        matched_patient=interaction.patient_id is not None,
    )
    return Ingested(interaction, created=True)


def raw_event_record(*, source, provider_id, payload, interaction=None):
    return RawEvent.objects.create(
        source=source, provider_id=provider_id, payload=payload, interaction=interaction
    )


def webhook_signature_use(*, signature):
    """Record a webhook signature's one use; False when it was used before (the
    unique constraint decides). Run it inside the transaction that stores the
    event: a request that fails after this leaves the signature unused, so the
    provider's retry is accepted."""
    return _insert_unless_duplicate(WebhookSignatureUse(signature=signature))


def webhook_signatures_purge(*, now):
    """Forget signatures that can no longer be replayed: a signature's timestamp may
    be up to the tolerance in the past or in the future of its use."""
    window = timedelta(seconds=2 * WEBHOOK_SIGNATURE_TOLERANCE_SECONDS)
    return WebhookSignatureUse.objects.filter(used_at__lt=now - window).delete()[0]


def event_record(*, conversation, text, actor=None, metadata=None):
    """A timeline event (who did what, when) so the history explains itself."""
    interaction = Interaction.objects.create(
        conversation=conversation,
        patient=conversation.patient,
        channel=conversation.channel,
        kind=Interaction.Kind.EVENT,
        direction=Interaction.Direction.INTERNAL,
        body=text,
        author=actor,
        occurred_at=timezone.now(),
        metadata=metadata or {},
    )
    _interaction_added(interaction, conversation)
    return interaction


class ConsentRefused(Exception):
    pass


def outbound_create(
    *,
    conversation,
    body,
    author=None,
    kind=Interaction.Kind.MESSAGE,
    metadata=None,
    to_address=None,
):
    """A reply, reminder or auto-reply: the Interaction and its delivery record in
    one transaction, then the send queued on commit. Without consent (an opted-out
    number) it is stored as failed with the reason and never sent."""
    with transaction.atomic():
        now = timezone.now()
        interaction = Interaction.objects.create(
            conversation=conversation,
            patient=conversation.patient,
            channel=conversation.channel,
            kind=kind,
            direction=Interaction.Direction.OUTBOUND,
            body=body,
            author=author,
            occurred_at=now,
            metadata=metadata or {},
        )
        address = to_address or conversation.contact_address
        decision = consent_check(
            patient=conversation.patient, channel=conversation.channel, address=address
        )
        outbound = OutboundMessage.objects.create(
            interaction=interaction,
            channel=conversation.channel,
            to_address=address,
            state=OutboundMessage.State.QUEUED
            if decision.allowed
            else OutboundMessage.State.FAILED,
            last_error="" if decision.allowed else decision.reason.replace("_", " "),
        )
        _touch_conversation(conversation, interaction)
        _interaction_added(interaction, conversation)
    if decision.allowed:
        from channels_app import tasks

        enqueue_on_commit(tasks.outbound_send, str(outbound.pk))
    if author is not None:
        from channels_app.signals import staff_replied

        transaction.on_commit(
            lambda: staff_replied.send(sender=Interaction, interaction=interaction), robust=True
        )
    return interaction


def outbound_claim(*, outbound_id):
    """Take a queued delivery for sending: a conditional update, so two workers
    given the same id never both send. Returns the row or None."""
    claimed = OutboundMessage.objects.filter(
        pk=outbound_id, state=OutboundMessage.State.QUEUED
    ).update(
        state=OutboundMessage.State.SENDING,
        claimed_at=timezone.now(),
        attempts=F("attempts") + 1,
        updated_at=timezone.now(),
    )
    if not claimed:
        return None
    return OutboundMessage.objects.select_related(
        "interaction", "interaction__conversation", "interaction__conversation__account"
    ).get(pk=outbound_id)


@transaction.atomic
def outbound_mark_sent(*, outbound, provider_id, provider_status=""):
    OutboundMessage.objects.filter(pk=outbound.pk, state=OutboundMessage.State.SENDING).update(
        state=OutboundMessage.State.SENT,
        provider_id=provider_id or "",
        provider_status=provider_status,
        last_error="",
        updated_at=timezone.now(),
    )
    if provider_id:
        Interaction.objects.filter(pk=outbound.interaction_id, provider_id="").update(
            provider_id=provider_id
        )
    _publish_delivery(outbound.pk)


def delivery_attempt_record(*, outbound, started, outcome, provider_status="", error=""):
    """The row of one send attempt; `started` is the perf_counter() value taken
    before the provider was called. Numbered by the claim's attempts counter, so a
    redelivered task's attempt is not recorded twice."""
    latency_ms = round((time.perf_counter() - started) * 1000)
    DeliveryAttempt.objects.get_or_create(
        outbound_id=outbound.pk,
        number=outbound.attempts,
        defaults={
            "attempted_at": timezone.now() - timedelta(milliseconds=latency_ms),
            "latency_ms": latency_ms,
            "outcome": outcome,
            "provider_status": provider_status[:20],
            "error": error[:300],
        },
    )


def outbound_release_for_retry(*, outbound, error):
    OutboundMessage.objects.filter(pk=outbound.pk, state=OutboundMessage.State.SENDING).update(
        state=OutboundMessage.State.QUEUED, last_error=error[:300], updated_at=timezone.now()
    )


def outbound_mark_failed(*, outbound, error):
    failed = OutboundMessage.objects.filter(
        pk=outbound.pk, state__in=[OutboundMessage.State.QUEUED, OutboundMessage.State.SENDING]
    ).update(state=OutboundMessage.State.FAILED, last_error=error[:300], updated_at=timezone.now())
    if failed:
        _publish_delivery(outbound.pk)


TWILIO_STATUS_TO_STATE = {
    "accepted": OutboundMessage.State.SENT,
    "queued": OutboundMessage.State.SENT,
    "sending": OutboundMessage.State.SENT,
    "sent": OutboundMessage.State.SENT,
    "delivered": OutboundMessage.State.DELIVERED,
    "read": OutboundMessage.State.DELIVERED,
    "undelivered": OutboundMessage.State.UNDELIVERABLE,
    "failed": OutboundMessage.State.FAILED,
}


@transaction.atomic
def outbound_apply_status(*, outbound_id=None, provider_id, provider_status, error_code=""):
    """A delivery status callback: move the record forward only. Found by our own
    id (carried in the callback URL, so a send whose worker died before recording
    the provider id still settles) or by the provider id."""
    state = TWILIO_STATUS_TO_STATE.get(provider_status)
    if state is None:
        return None
    queryset = OutboundMessage.objects.select_for_update()
    outbound = None
    if outbound_id:
        outbound = queryset.filter(pk=outbound_id).first()
    if outbound is None and provider_id:
        outbound = queryset.filter(provider_id=provider_id).first()
    if outbound is None:
        return None
    if _STATE_RANK[state] <= _STATE_RANK[outbound.state] and not (
        outbound.state == OutboundMessage.State.SENDING and state == OutboundMessage.State.SENT
    ):
        return outbound
    if outbound.state in OutboundMessage.FINAL_STATES:
        return outbound
    outbound.state = state
    outbound.provider_status = provider_status
    if provider_id and not outbound.provider_id:
        outbound.provider_id = provider_id
        Interaction.objects.filter(pk=outbound.interaction_id, provider_id="").update(
            provider_id=provider_id
        )
    if error_code:
        outbound.last_error = f"provider error {error_code}"
    outbound.save(
        update_fields=["state", "provider_status", "provider_id", "last_error", "updated_at"]
    )
    logger.info(
        "outbound_status", outbound_id=str(outbound.pk), channel=outbound.channel, state=state
    )
    _publish_delivery(outbound.pk)
    return outbound


def conversations_move_patient(*, survivor, duplicate):
    """Receiver of patients_merged (inside the merge's transaction)."""
    moved = Conversation.objects.filter(patient=duplicate).update(patient=survivor)
    Interaction.objects.filter(patient=duplicate).update(patient=survivor)
    return moved


# Channels whose provider deduplicates a resend of the same delivery: Twilio
# settles through the status callback that carries our id (a send that reached
# Twilio is never still "sending" once its callback arrived), the portal through
# the Idempotency-Key header.
_SAFE_TO_RESEND = {Channel.SMS, Channel.PORTAL}


def outbound_settle_stale(*, outbound):
    """A delivery left in "sending" past the stale window: its worker died. Where a
    resend cannot duplicate, queue it again; otherwise mark it failed with the
    reason, so staff see it instead of a silent loss."""
    if outbound.channel in _SAFE_TO_RESEND:
        requeued = OutboundMessage.objects.filter(
            pk=outbound.pk, state=OutboundMessage.State.SENDING, provider_id=""
        ).update(
            state=OutboundMessage.State.QUEUED,
            last_error="requeued after a lost worker",
            updated_at=timezone.now(),
        )
        if requeued:
            from channels_app import tasks

            enqueue_on_commit(tasks.outbound_send, str(outbound.pk))
        return
    outbound_mark_failed(outbound=outbound, error="delivery unknown: the worker was lost mid-send")


def local_outbox_record(
    *, channel, provider_id, to_address, body, from_address="", subject="", outbound=None
):
    """A local provider's send: the message kept in the local outbox, and its
    delivery report queued as a provider's status callback would arrive, after the
    send itself is recorded."""
    record = LocalOutboxMessage.objects.create(
        channel=channel,
        provider_id=provider_id,
        outbound=outbound,
        from_address=from_address,
        to_address=to_address,
        subject=subject[:300],
        body=body,
    )
    from channels_app import tasks

    enqueue_on_commit(tasks.outbound_local_report, str(record.pk))
    logger.info(
        "local_outbox_recorded",
        channel=channel,
        outbox_id=str(record.pk),
        outbound_id=str(outbound.pk) if outbound else None,
    )
    return record


def local_outbox_report(*, outbox_id):
    """The local provider's "delivered" callback, through the same status service
    as Twilio's. Returns False while the delivery record does not know the
    message yet (an email's id is stored once its send returns): ask again later.
    The delivery's new state and the outbox row's link to it commit together, so
    no reader sees one without the other."""
    with transaction.atomic():
        record = LocalOutboxMessage.objects.filter(pk=outbox_id, reported_at__isnull=True).first()
        if record is None:
            return True
        outbound = outbound_apply_status(
            outbound_id=record.outbound_id,
            provider_id=record.provider_id,
            provider_status="delivered",
        )
        if outbound is None:
            return False
        LocalOutboxMessage.objects.filter(pk=record.pk).update(
            outbound=outbound, reported_at=timezone.now()
        )
        return True


def outbound_answered_inline(*, conversation, body):
    """A reply the provider sends from our webhook answer (TwiML), such as the
    HELP text: on the timeline like any reply, already sent."""
    with transaction.atomic():
        interaction = Interaction.objects.create(
            conversation=conversation,
            patient=conversation.patient,
            channel=conversation.channel,
            kind=Interaction.Kind.MESSAGE,
            direction=Interaction.Direction.OUTBOUND,
            body=body,
            occurred_at=timezone.now(),
            metadata={"sent_by": "webhook_answer"},
        )
        OutboundMessage.objects.create(
            interaction=interaction,
            channel=conversation.channel,
            to_address=conversation.contact_address,
            state=OutboundMessage.State.SENT,
        )
        _touch_conversation(conversation, interaction)
        _interaction_added(interaction, conversation)
    return interaction


# --- Conversation state: channels_app is its one writer ----------------------------
#
# Every change of a conversation's status, team, assignee, priority, snooze and
# labels goes through one of the services below, whoever asks: staff (API and
# workspace), escalation, reminders, reporting. Each one, once: saves the changed
# columns, writes the timeline event and the audit row, grants and revokes team
# access, and after commit sends its signal and publishes one live event.
#
# The caller passes the conversation instance it holds; the service locks the row
# (at no cost when the caller locked it already) and re-reads the columns it
# changes, so a stale instance never writes an old value back. Other columns of
# the instance are left as the caller has them.
#
# `note` is the timeline text when the caller explains the change in its own words
# (routing says why it picked this person); `metadata` adds ids to the event.
# tests/channels_app/test_conversation_state.py fails when another app writes these
# columns itself.

_TRANSITIONS = {
    Conversation.Status.OPEN: {"pending", "snoozed", "resolved"},
    Conversation.Status.PENDING: {"open", "snoozed", "resolved"},
    Conversation.Status.SNOOZED: {"open", "pending", "resolved"},
    Conversation.Status.RESOLVED: {"open"},
}
_STATUS_COLUMNS = ("status", "snoozed_until", "resolved_at")


class ConversationChangeRefused(Exception):
    def __init__(self, message, *, code, field=None):
        super().__init__(message)
        self.code = code
        self.field = field


def _lock_columns(conversation, columns):
    """Lock the row for this transaction and load `columns` (attnames) fresh."""
    fresh = (
        Conversation.objects.select_for_update(of=("self",))
        .values(*columns)
        .get(pk=conversation.pk)
    )
    for name, value in fresh.items():
        setattr(conversation, name, value)


def _record_change(
    conversation, *, kind, change, columns, actor, note=None, metadata=None, details=None
):
    """The side effects every state change has, once each."""
    conversation.save(update_fields=[*columns, "updated_at"])
    text = note or change
    event_record(
        conversation=conversation,
        text=f"{actor.get_username()}: {text}" if actor is not None else text,
        actor=actor,
        metadata={"change": change, **(metadata or {})},
    )
    audit_record(
        action=AuditEvent.Action.UPDATE,
        resource_type="conversation",
        resource_id=conversation.pk,
        patient_ids=[conversation.patient_id] if conversation.patient_id else [],
        purpose_of_use=AuditEvent.PurposeOfUse.TREAT
        if actor is not None
        else AuditEvent.PurposeOfUse.HOPERAT,
        actor=actor,
        details={"change": kind, **(details or {})},
    )
    signal = signals.CONVERSATION_CHANGE_SIGNALS[kind]
    transaction.on_commit(
        lambda: signal.send(sender=Conversation, conversation=conversation, actor=actor),
        robust=True,
    )
    # One live event per change, the kind of change as its code.
    live.publish_on_commit(
        kind=live.CONVERSATION,
        conversation_id=conversation.pk,
        team_id=conversation.team_id,
        change=kind,
    )


def _check_transition(conversation, status):
    if status not in _TRANSITIONS[conversation.status]:
        raise ConversationChangeRefused(
            f"A {conversation.status} conversation cannot become {status}.",
            code="invalid_transition",
            field="status",
        )


@transaction.atomic
def conversation_resolve(*, conversation, actor=None, note=None, metadata=None):
    """Resolve: conversation_resolved (the CSAT survey, KPIs) follows on commit.
    Returns whether anything changed (an already resolved one stays as it is)."""
    _lock_columns(conversation, _STATUS_COLUMNS)
    if conversation.status == Conversation.Status.RESOLVED:
        return False
    _check_transition(conversation, Conversation.Status.RESOLVED)
    before = conversation.status
    conversation.status = Conversation.Status.RESOLVED
    conversation.snoozed_until = None
    conversation.resolved_at = timezone.now()
    _record_change(
        conversation,
        kind=signals.RESOLVED,
        change=f"status {before} → resolved",
        columns=_STATUS_COLUMNS,
        actor=actor,
        note=note,
        metadata=metadata,
    )
    return True


@transaction.atomic
def conversation_reopen(*, conversation, actor=None, note=None, metadata=None):
    """Make a resolved, pending or snoozed conversation open again. Returns
    whether anything changed."""
    _lock_columns(conversation, _STATUS_COLUMNS)
    before = conversation.status
    if before == Conversation.Status.OPEN:
        return False
    conversation.status = Conversation.Status.OPEN
    conversation.snoozed_until = conversation.resolved_at = None
    _record_change(
        conversation,
        kind=signals.REOPENED,
        # "reopened" is what the KPI report counts as undoing a resolution.
        change="reopened" if before == Conversation.Status.RESOLVED else f"status {before} → open",
        columns=_STATUS_COLUMNS,
        actor=actor,
        note=note,
        metadata=metadata,
        details={"from_status": before},
    )
    return True


@transaction.atomic
def conversation_set_pending(*, conversation, actor=None, note=None, metadata=None):
    """Waiting on the patient. Returns whether anything changed."""
    _lock_columns(conversation, _STATUS_COLUMNS)
    before = conversation.status
    if before == Conversation.Status.PENDING:
        return False
    _check_transition(conversation, Conversation.Status.PENDING)
    conversation.status = Conversation.Status.PENDING
    conversation.snoozed_until = conversation.resolved_at = None
    _record_change(
        conversation,
        kind=signals.PENDING,
        change=f"status {before} → pending",
        columns=_STATUS_COLUMNS,
        actor=actor,
        note=note,
        metadata=metadata,
    )
    return True


@transaction.atomic
def conversation_snooze(*, conversation, until, actor=None, note=None, metadata=None):
    """Out of the inbox until `until` (in the future); a new inbound message or the
    wake-up sweep opens it again. Snoozing a snoozed one moves its time."""
    _lock_columns(conversation, _STATUS_COLUMNS)
    if until is None or until <= timezone.now():
        raise ConversationChangeRefused(
            "Snoozing needs snoozed_until in the future.",
            code="invalid_snooze",
            field="snoozed_until",
        )
    if conversation.status != Conversation.Status.SNOOZED:
        _check_transition(conversation, Conversation.Status.SNOOZED)
    conversation.status = Conversation.Status.SNOOZED
    conversation.snoozed_until = until
    conversation.resolved_at = None
    _record_change(
        conversation,
        kind=signals.SNOOZED,
        change=f"snoozed until {until.isoformat()}",
        columns=_STATUS_COLUMNS,
        actor=actor,
        note=note,
        metadata=metadata,
    )
    return True


def _is_team_member(user, team):
    return user.groups.filter(pk=team.group_id).exists()


@transaction.atomic
def conversation_move_to_team(*, conversation, team, actor=None, note=None, metadata=None):
    """Hand the conversation to another team: its members gain access, the old
    team's lose it, and an assignee who is not in the new team lets go. Returns
    whether anything changed."""
    _lock_columns(conversation, ("team_id", "assignee_id"))
    if conversation.team_id == team.pk:
        return False
    old_team = Team.objects.get(pk=conversation.team_id)
    conversation.team = team
    columns = ["team"]
    details = {"from_team_id": old_team.pk, "to_team_id": team.pk}
    if conversation.assignee_id is not None and not _is_team_member(conversation.assignee, team):
        details["unassigned_user_id"] = conversation.assignee_id
        conversation.assignee = None
        columns.append("assignee")
    grant_team_access(obj=conversation, team=team, perm=VIEW_CONVERSATION)
    revoke_team_access(obj=conversation, team=old_team, perm=VIEW_CONVERSATION)
    _record_change(
        conversation,
        kind=signals.MOVED,
        change=f"moved from {old_team.name} to {team.name}",
        columns=columns,
        actor=actor,
        note=note,
        metadata=metadata,
        details=details,
    )
    return True


@transaction.atomic
def conversation_assign(
    *, conversation, assignee, actor=None, actor_is_supervisor=None, note=None, metadata=None
):
    """Give the conversation to `assignee` (a member of its team) or to nobody.
    A staff actor who is not a supervisor may only take an unassigned one or give
    back their own; `actor_is_supervisor` defaults to the actor's role. Returns
    whether anything changed."""
    _lock_columns(conversation, ("team_id", "assignee_id"))
    current = conversation.assignee_id
    target = assignee.pk if assignee is not None else None
    if target == current:
        return False
    if actor is not None:
        if actor_is_supervisor is None:
            actor_is_supervisor = roles.has_role(actor, roles.SUPERVISOR)
        taking = target == actor.pk and current is None
        giving_back = target is None and current == actor.pk
        if not (actor_is_supervisor or taking or giving_back):
            raise ConversationChangeRefused(
                "Agents may take unassigned conversations or give back their own.",
                code="assignment_not_allowed",
                field="assignee",
            )
    if assignee is not None and not _is_team_member(assignee, conversation.team):
        raise ConversationChangeRefused(
            "The assignee must be a member of the conversation's team.",
            code="assignee_not_in_team",
            field="assignee",
        )
    conversation.assignee = assignee
    _record_change(
        conversation,
        kind=signals.ASSIGNED,
        change=f"assigned to {assignee.get_username()}" if assignee else "unassigned",
        columns=["assignee"],
        actor=actor,
        note=note,
        metadata=metadata,
        details={"from_user_id": current, "to_user_id": target},
    )
    return True


@transaction.atomic
def conversation_set_priority(*, conversation, priority, actor=None, reason="", metadata=None):
    """Set the priority; `reason` is added to the timeline text. Returns whether
    anything changed."""
    _lock_columns(conversation, ("priority",))
    if priority == conversation.priority:
        return False
    before = conversation.get_priority_display()
    conversation.priority = priority
    change = f"priority {before} → {conversation.get_priority_display()}"
    _record_change(
        conversation,
        kind=signals.PRIORITY,
        change=change,
        columns=["priority"],
        actor=actor,
        note=f"{change} ({reason})" if reason else None,
        metadata=metadata,
        details={"priority": conversation.get_priority_display()},
    )
    return True


@transaction.atomic
def conversation_set_labels(*, conversation, labels, actor=None, metadata=None):
    """Replace the labels (kept sorted, once each). Returns whether anything changed."""
    _lock_columns(conversation, ("labels",))
    labels = sorted(set(labels))
    if labels == sorted(conversation.labels):
        return False
    conversation.labels = labels
    _record_change(
        conversation,
        kind=signals.LABELS,
        change="labels set to " + (", ".join(labels) or "none"),
        columns=["labels"],
        actor=actor,
        metadata=metadata,
    )
    return True


@transaction.atomic
def conversation_set_patient(*, conversation, patient, actor=None):
    """Staff match an unmatched conversation: its interactions join the patient's
    timeline and it moves to the patient's team."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    conversation.patient = patient
    conversation.save(update_fields=["patient", "updated_at"])
    Interaction.objects.filter(conversation=conversation).update(patient=patient)
    conversation_move_to_team(conversation=conversation, team=patient.team, actor=actor)
    _publish_conversation(conversation)
    return conversation


def conversation_change(*, conversation, actor, actor_is_supervisor, changes):
    """A staff change from the API (status, snoozed_until, assignee, priority,
    labels, patient), all or nothing, through the services above."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update().select_related("team").get(pk=conversation.pk)
        )
        if "status" in changes:
            _change_status(conversation, changes["status"], changes.get("snoozed_until"), actor)
        if "assignee" in changes:
            conversation_assign(
                conversation=conversation,
                assignee=changes["assignee"],
                actor=actor,
                actor_is_supervisor=actor_is_supervisor,
            )
        if "priority" in changes:
            conversation_set_priority(
                conversation=conversation, priority=changes["priority"], actor=actor
            )
        if "labels" in changes:
            conversation_set_labels(
                conversation=conversation, labels=changes["labels"], actor=actor
            )
        if "patient" in changes and changes["patient"] is not None:
            if conversation.patient_id and conversation.patient_id != changes["patient"].pk:
                raise ConversationChangeRefused(
                    "This conversation already belongs to a patient.",
                    code="patient_already_set",
                    field="patient",
                )
            if conversation.patient_id is None:
                conversation = conversation_set_patient(
                    conversation=conversation, patient=changes["patient"], actor=actor
                )
                event_record(
                    conversation=conversation,
                    text=f"{actor.get_username()}: matched to a patient",
                    actor=actor,
                    metadata={"change": "matched to a patient"},
                )
    return conversation


def _change_status(conversation, status, snoozed_until, actor):
    if status == Conversation.Status.RESOLVED:
        conversation_resolve(conversation=conversation, actor=actor)
    elif status == Conversation.Status.OPEN:
        conversation_reopen(conversation=conversation, actor=actor)
    elif status == Conversation.Status.PENDING:
        conversation_set_pending(conversation=conversation, actor=actor)
    elif status == Conversation.Status.SNOOZED:
        conversation_snooze(conversation=conversation, until=snoozed_until, actor=actor)


def conversation_mark_read(*, conversation, user):
    """One UPDATE when the user read it before (every refresh of an open page);
    an INSERT the first time, the unique constraint settling a race."""
    from channels_app.models import ConversationRead

    now = timezone.now()
    marker = ConversationRead.objects.filter(conversation=conversation, user=user)
    if marker.update(last_read_at=now):
        return
    try:
        with transaction.atomic():
            ConversationRead.objects.create(conversation=conversation, user=user, last_read_at=now)
    except IntegrityError:
        marker.update(last_read_at=now)


def conversations_wake_snoozed(*, now=None):
    """Wake conversations whose snooze ended; a new inbound message wakes one at once."""
    now = now or timezone.now()
    woken = 0
    with transaction.atomic():
        due = list(
            Conversation.objects.select_for_update(skip_locked=True).filter(
                status=Conversation.Status.SNOOZED, snoozed_until__lte=now
            )[:500]
        )
        for conversation in due:
            conversation_reopen(
                conversation=conversation, note="snooze ended", metadata={"change": "woken"}
            )
            woken += 1
    return woken


class ReplyStale(Exception):
    """The patient wrote again after the interaction the author last saw."""

    code = "stale_reply"

    def __init__(self, *, latest_interaction_id):
        super().__init__(
            "The patient wrote again since you last looked. Read the new message, "
            "then send your reply again if it still fits."
        )
        self.latest_interaction_id = latest_interaction_id


def _newer_inbound(conversation, last_seen_interaction_id):
    """The newest inbound interaction after the one the author saw, or None. An
    id that is not of this conversation counts as having seen nothing."""
    seen_at = (
        Interaction.objects.filter(pk=last_seen_interaction_id, conversation=conversation)
        .values_list("occurred_at", flat=True)
        .first()
    )
    newer = Interaction.objects.filter(
        conversation=conversation, direction=Interaction.Direction.INBOUND
    )
    if seen_at is not None:
        newer = newer.filter(occurred_at__gt=seen_at)
    return newer.order_by("-occurred_at", "-id").values_list("pk", flat=True).first()


def reply_create(
    *,
    conversation,
    author,
    body,
    internal=False,
    last_seen_interaction_id=None,
):
    """A staff reply or internal note. Sending once per click is the caller's
    `Idempotency-Key` (contactcenter.idempotency, for the API and the workspace
    alike), claimed in the same transaction as this.

    With `last_seen_interaction_id` (the newest interaction the author had on
    screen), a reply is refused with ReplyStale when the patient wrote after it,
    so nobody answers a message they have not read. Notes are never refused.
    Returns (interaction, created)."""
    if last_seen_interaction_id and not internal:
        newer = _newer_inbound(conversation, last_seen_interaction_id)
        if newer is not None:
            raise ReplyStale(latest_interaction_id=newer)
    with transaction.atomic():
        if internal:
            interaction = Interaction.objects.create(
                conversation=conversation,
                patient=conversation.patient,
                channel=conversation.channel,
                kind=Interaction.Kind.NOTE,
                direction=Interaction.Direction.INTERNAL,
                body=body,
                author=author,
                occurred_at=timezone.now(),
            )
            _touch_conversation(conversation, interaction)
            _interaction_added(interaction, conversation)
        else:
            interaction = outbound_create(conversation=conversation, body=body, author=author)
    return interaction, True


# --- The phone line: menu choices, queues and callbacks ----------------------------


def call_set_language(*, call, language):
    CallDetail.objects.filter(pk=call.pk).update(language=language)
    call.language = language
    return call


def call_enqueue(*, call, team, menu_key, why=None, now=None):
    """The caller joins a team's queue: the call keeps the time it joined (its
    place). A caller's menu choice (`why` says which) also moves the conversation
    to that team's inbox; without a menu it stays where routing put it."""
    with transaction.atomic():
        # The call's row only (see voice._call): the interaction stays unlocked for
        # the worker, which holds the conversation while it writes the interaction.
        call = (
            CallDetail.objects.select_for_update(of=("self",))
            .select_related("interaction")
            .get(pk=call.pk)
        )
        if call.queued_at is None:
            call.queued_at = now or timezone.now()
            call.queue_team = team
            call.menu_key = menu_key
            call.save(update_fields=["queued_at", "queue_team", "menu_key"])
            conversation = (
                Conversation.objects.select_for_update()
                .select_related("team")
                .get(pk=call.interaction.conversation_id)
            )
            if why and conversation.team_id != team.pk:
                conversation_move_to_team(
                    conversation=conversation,
                    team=team,
                    note=f"{why}: moved from {conversation.team.name} to {team.name}",
                    metadata={
                        "change": "team",
                        "from_team": conversation.team_id,
                        "to_team": team.pk,
                    },
                )
    return call


def call_callback_offered(*, call, now=None):
    """The caller heard the callback offer (counted once per call)."""
    CallDetail.objects.filter(pk=call.pk, callback_offered_at__isnull=True).update(
        callback_offered_at=now or timezone.now()
    )


def _callback_window(team_id, now):
    from channels_app.selectors import queue_expected_wait_seconds

    expected = queue_expected_wait_seconds(team_id=team_id, now=now) or 0
    minutes = max(settings.VOICE_CALLBACK_WINDOW_MINUTES, math.ceil(expected / 60))
    return now + timedelta(minutes=minutes)


def _callback_create(*, conversation, account, team, phone, phone_index, language, queued_at, call):
    """A waiting callback, or the one this number already has on this line (the
    unique constraint decides when two requests race)."""
    from channels_app.selectors import callback_waiting_for, queue_position

    now = timezone.now()
    try:
        with transaction.atomic():
            callback = Callback.objects.create(
                conversation=conversation,
                call=call,
                account=account,
                team=team,
                phone=phone,
                phone_index=phone_index,
                language=language,
                queued_at=queued_at,
                requested_at=now,
                due_at=_callback_window(team.pk, now),
            )
    except IntegrityError:
        return callback_waiting_for(account=account, phone_index=phone_index), False
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if locked.callback_due_at is None or callback.due_at < locked.callback_due_at:
        locked.callback_due_at = callback.due_at
        locked.save(update_fields=["callback_due_at", "updated_at"])
    conversation_reopen(conversation=locked, metadata={"callback": str(callback.pk)})
    position = queue_position(team_id=team.pk, queued_at=queued_at)
    event_record(
        conversation=locked,
        text=f"Callback requested: number {position} in the {team.name} queue, "
        f"promised by {callback.due_at.isoformat(timespec='minutes')}",
        metadata={
            "change": "callback_requested",
            "callback": str(callback.pk),
            "position": position,
            "due_at": callback.due_at.isoformat(),
        },
    )
    return callback, True


def callback_request(*, call):
    """A caller waiting in a queue pressed 1: a callback takes the call's place in
    that queue. Asking twice (a retried webhook) returns the first callback."""
    with transaction.atomic():
        call = (
            CallDetail.objects.select_for_update(of=("self",))
            .select_related("interaction__conversation", "queue_team")
            .get(pk=call.pk)
        )
        existing = Callback.objects.filter(call=call).first()
        if existing is not None:
            return existing
        conversation = call.interaction.conversation
        callback, _created = _callback_create(
            conversation=conversation,
            account=conversation.account,
            team=call.queue_team,
            phone=conversation.contact_address,
            phone_index=conversation.contact_index,
            language=call.language,
            queued_at=call.queued_at,
            call=call,
        )
        return callback


def callback_request_by_text(*, interaction):
    """A reply CALL to the missed-call text: a callback at the back of the queue
    the missed call waited in, on the conversation of the text. None when the
    conversation's last text from the practice was not a missed-call text."""
    conversation = interaction.conversation
    text = (
        Interaction.objects.filter(
            conversation=conversation,
            direction=Interaction.Direction.OUTBOUND,
            occurred_at__lte=interaction.occurred_at,
        )
        .order_by("-occurred_at", "-id")
        .first()
    )
    missed_call_id = (text.metadata or {}).get("missed_call") if text else None
    call = (
        CallDetail.objects.select_related("interaction__conversation__account", "queue_team")
        .filter(pk=missed_call_id)
        .first()
        if missed_call_id
        else None
    )
    if call is None or call.queue_team is None:
        return None
    with transaction.atomic():
        callback, created = _callback_create(
            conversation=conversation,
            account=call.interaction.conversation.account,
            team=call.queue_team,
            phone=conversation.contact_address,
            phone_index=conversation.contact_index,
            language=call.language,
            queued_at=interaction.occurred_at,
            call=None,
        )
        if created:
            # The caller who gave up took the callback after all: not an abandoned call.
            CallDetail.objects.filter(
                pk=call.pk, queue_result=CallDetail.QueueResult.ABANDONED
            ).update(queue_result=CallDetail.QueueResult.CALLBACK)
    return callback


class CallbackRefused(Exception):
    def __init__(self, message, *, code):
        super().__init__(message)
        self.code = code


def callback_dial_request(*, callback, agent, agent_number):
    """An agent asks to call the patient back: the callback is taken (one agent
    at a time) and the worker asks Twilio to dial."""
    with transaction.atomic():
        taken = Callback.objects.filter(pk=callback.pk, status=Callback.Status.PENDING).update(
            status=Callback.Status.DIALLING,
            agent=agent,
            agent_number=agent_number,
            dial_requested_at=timezone.now(),
            provider_call_sid="",
            provider_status="",
        )
        if not taken:
            raise CallbackRefused(
                "This callback is already being dialled or was made.", code="callback_not_pending"
            )
        event_record(
            conversation=callback.conversation,
            text=f"{agent.get_username()}: calling back",
            actor=agent,
            metadata={"change": "callback_dialling", "callback": str(callback.pk)},
        )
        from channels_app import tasks

        enqueue_on_commit(tasks.outbound_callback_dial, str(callback.pk))
    callback.refresh_from_db()
    return callback


def callback_status_url(callback):
    base = settings.PUBLIC_BASE_URL
    return f"{base}/webhooks/twilio/voice/callback/status/?callback={callback.pk}"


def callback_twiml(callback):
    """What the patient hears when they pick up: who calls, then the agent's phone."""
    from twilio.twiml.voice_response import VoiceResponse

    from channels_app.voice_prompts import TWILIO_LANGUAGE, text

    response = VoiceResponse()
    response.say(
        text(callback.language, "callback_intro", practice=settings.PRACTICE_NAME),
        language=TWILIO_LANGUAGE[callback.language],
    )
    response.dial(callback.agent_number, caller_id=callback.account.address)
    return str(response)


def callback_dialled(*, callback, provider_call_sid):
    """Twilio accepted the call to the patient: the callback is made (its window
    is met), and the call is on the conversation's timeline."""
    with transaction.atomic():
        now = timezone.now()
        callback = (
            Callback.objects.select_for_update().select_related("conversation").get(pk=callback.pk)
        )
        callback.provider_call_sid = provider_call_sid
        callback.dial_attempts += 1
        callback.last_error = ""
        callback.dialled_at = callback.dialled_at or now
        callback.save(
            update_fields=["provider_call_sid", "dial_attempts", "last_error", "dialled_at"]
        )
        conversation = Conversation.objects.select_for_update().get(pk=callback.conversation_id)
        interaction = Interaction.objects.create(
            conversation=conversation,
            patient=conversation.patient,
            channel=Channel.VOICE,
            kind=Interaction.Kind.CALL,
            direction=Interaction.Direction.OUTBOUND,
            provider_id=provider_call_sid,
            author_id=callback.agent_id,
            occurred_at=now,
            metadata={"callback": str(callback.pk)},
        )
        _touch_conversation(conversation, interaction)
        _interaction_added(interaction, conversation)
        if not Callback.objects.filter(
            conversation_id=conversation.pk, status=Callback.Status.PENDING
        ).exists():
            Conversation.objects.filter(pk=conversation.pk).update(callback_due_at=None)
            _publish_conversation(conversation)
    return callback


def callback_dial_failed(*, callback, error):
    """Twilio refused the call for good: the callback goes back to its place."""
    with transaction.atomic():
        Callback.objects.filter(pk=callback.pk, status=Callback.Status.DIALLING).update(
            status=Callback.Status.PENDING, last_error=error[:200]
        )
        event_record(
            conversation=callback.conversation,
            text=f"Callback not dialled ({error[:100]}); it keeps its place in the queue",
            metadata={"change": "callback_failed", "callback": str(callback.pk)},
        )


_CALL_NOT_CONNECTED = {"busy", "no-answer", "failed", "canceled"}


def callback_apply_status(*, callback_id, call_status):
    """Twilio's final status of the call to the patient: answered, the callback is
    done; not answered, it waits again at its place for the next try."""
    with transaction.atomic():
        callback = (
            Callback.objects.select_for_update()
            .select_related("conversation")
            .filter(pk=callback_id, status=Callback.Status.DIALLING)
            .first()
        )
        if callback is None or call_status not in (_CALL_NOT_CONNECTED | {"completed"}):
            return None
        callback.provider_status = call_status
        if call_status == "completed":
            callback.status = Callback.Status.DONE
            note = "Callback made: the patient answered"
        else:
            callback.status = Callback.Status.PENDING
            note = f"Callback not answered ({call_status}); it keeps its place in the queue"
        callback.save(update_fields=["provider_status", "status"])
        event_record(
            conversation=callback.conversation,
            text=note,
            metadata={"change": f"callback_{callback.status}", "callback": str(callback.pk)},
        )
    return callback


def missed_call_text_send(*, call_id):
    """One text to a caller who gave up waiting: a callback (reply CALL) or a reply
    by text, on the practice's SMS line with the voice line's number, in the
    caller's language. Only with consent, and once per call (a conditional update
    claims it). Returns the text's interaction or None."""
    from channels_app.voice_prompts import text

    call = (
        CallDetail.objects.select_related("interaction__conversation__account")
        .filter(pk=call_id)
        .first()
    )
    if call is None or call.missed_call_text_at is not None:
        return None
    voice_conversation = call.interaction.conversation
    sms_account = ChannelAccount.objects.filter(
        kind=Channel.SMS, address=voice_conversation.account.address, active=True
    ).first()
    if sms_account is None or not voice_conversation.contact_address:
        return None
    decision = consent_check(
        patient=voice_conversation.patient,
        channel=Channel.SMS,
        address=voice_conversation.contact_address,
    )
    with transaction.atomic():
        claimed = CallDetail.objects.filter(pk=call.pk, missed_call_text_at__isnull=True).update(
            missed_call_text_at=timezone.now()
        )
        if not claimed:
            return None
        if not decision.allowed:
            event_record(
                conversation=voice_conversation,
                text=f"Missed-call text not sent: {decision.reason.replace('_', ' ')}",
                metadata={"change": "missed_call_text_skipped", "reason": decision.reason},
            )
            return None
        conversation = conversation_for_inbound(
            channel=Channel.SMS, account=sms_account, address=voice_conversation.contact_address
        )
        interaction = outbound_create(
            conversation=conversation,
            body=text(call.language, "missed_call_text", practice=settings.PRACTICE_NAME),
            metadata={"missed_call": str(call.pk)},
        )
        event_record(
            conversation=voice_conversation,
            text="Missed-call text sent",
            metadata={"change": "missed_call_text", "sms_conversation": str(conversation.pk)},
        )
    return interaction


# --- Channel accounts (the API and `manage.py create_channel_account` share these) ---

_HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(\.{_HOST_LABEL})*$")


def _e164(value):
    """A practice number exactly as E.164 writes it (+ and up to 15 digits), and one
    the numbering plan knows: what Twilio puts in To and From."""
    text = (value or "").strip()
    if not re.fullmatch(r"\+[1-9]\d{1,14}", text):
        raise ValidationError("Write the number in E.164 form, e.g. +14155550100.")
    try:
        normalised = normalise_phone(text)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if normalised != text:
        raise ValidationError("Write the number in E.164 form, e.g. +14155550100.")
    return text


def channel_account_validate(*, values, account=None):
    """The values of a new or changed channel account, checked and normalised as a
    whole (the address by kind, IMAP settings only on a mailbox, opening hours only
    on a voice number). Raises ValidationError with a message per field. Whether an
    IMAP server answers is not checked here: see imap.imap_check."""
    merged = {
        field.name: getattr(account, field.name)
        for field in ChannelAccount._meta.concrete_fields
        if account is not None and field.name not in ("id", "secret")
    }
    if account is not None:
        merged["team"] = account.team
    merged.update(values)
    errors = {}
    kind = merged.get("kind")
    if account is not None and kind != account.kind:
        errors["kind"] = ["The kind of an account cannot change; create another account."]
    address = (merged.get("address") or "").strip()
    try:
        if kind in (Channel.SMS, Channel.VOICE):
            address = _e164(address)
        elif kind == Channel.EMAIL:
            address = normalise_email(address)
            validate_email(address)
        elif kind == Channel.PORTAL:
            URLValidator(schemes=["https", "http"])(address)
    except (ValidationError, ValueError) as exc:
        errors["address"] = list(getattr(exc, "messages", [str(exc)]))
    if not errors.get("address") and kind in Channel.values:
        duplicate = ChannelAccount.objects.filter(kind=kind, address=address)
        if account is not None:
            duplicate = duplicate.exclude(pk=account.pk)
        if duplicate.exists():
            errors["address"] = [f"There is already a {kind} account with this address."]
    has_secret = bool(values.get("secret") or (account is not None and account.secret))
    if kind == Channel.PORTAL and not has_secret:
        errors["secret"] = ["A portal account needs the secret its webhook is signed with."]
    if kind == Channel.EMAIL and merged.get("imap_host"):
        if not _HOSTNAME.match(merged["imap_host"]):
            errors["imap_host"] = ["Not a host name."]
        if not 1 <= int(merged.get("imap_port") or 0) <= 65535:
            errors["imap_port"] = ["A port from 1 to 65535."]
        if not has_secret:
            errors["secret"] = ["A mailbox read over IMAP needs its password as the secret."]
    elif kind != Channel.EMAIL:
        for name in ("imap_host", "imap_username"):
            if values.get(name):
                errors[name] = ["Only a mailbox (kind email) is read over IMAP."]
    if merged.get("open_hours"):
        if kind != Channel.VOICE:
            errors["open_hours"] = ["Opening hours belong to a voice number."]
        else:
            try:
                calendar_from_config(merged["open_hours"])
            except ValueError as exc:
                errors["open_hours"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return {**values, "address": address} if "address" in values or account is None else values


def channel_account_create(*, values):
    """A number, mailbox or portal endpoint; `values` are the model's fields (team
    a Team, secret in clear: it is stored encrypted)."""
    values = channel_account_validate(values=values)
    return ChannelAccount.objects.create(**values)


@transaction.atomic
def channel_account_update(*, account, values):
    """Change an account. An empty or missing secret keeps the stored one; a new
    IMAP host, user or folder is a new mailbox, read from its start."""
    values = {k: v for k, v in values.items() if not (k == "secret" and not v)}
    values = channel_account_validate(values=values, account=account)
    mailbox_changed = any(
        name in values and values[name] != getattr(account, name)
        for name in ("imap_host", "imap_username", "imap_folder")
    )
    for name, value in values.items():
        setattr(account, name, value)
    account.save()
    if mailbox_changed:
        ImapCursor.objects.filter(account=account).delete()
    return account


def conversation_set_language(*, conversation_id, language):
    """Remember the language the patient writes in (detected from a message)."""
    return (
        Conversation.objects.filter(pk=conversation_id)
        .exclude(language=language)
        .update(language=language, updated_at=timezone.now())
    )


@transaction.atomic
def conversation_resolve_automated(*, conversation, reason):
    """Resolve a conversation that an automated answer settled before any staff
    member wrote in it, with the reason on its timeline, an audit row and a live
    event like every change. Unlike conversation_resolve it sends no
    conversation_resolved: an automated answer is not surveyed (the patient's next
    message would be read as a reply to the survey). Returns False, changing
    nothing, when staff wrote in it or it was resolved meanwhile."""
    _lock_columns(conversation, _STATUS_COLUMNS)
    if conversation.status == Conversation.Status.RESOLVED:
        return False
    if Interaction.objects.filter(conversation=conversation, author__isnull=False).exists():
        return False
    conversation.status = Conversation.Status.RESOLVED
    conversation.snoozed_until = None
    conversation.resolved_at = timezone.now()
    conversation.save(update_fields=[*_STATUS_COLUMNS, "updated_at"])
    event_record(conversation=conversation, text=reason, metadata={"change": "resolved_automated"})
    audit_record(
        action=AuditEvent.Action.UPDATE,
        resource_type="conversation",
        resource_id=conversation.pk,
        patient_ids=[conversation.patient_id] if conversation.patient_id else [],
        purpose_of_use=AuditEvent.PurposeOfUse.HOPERAT,
        details={"change": "resolved_automated"},
    )
    live.publish_on_commit(
        kind=live.CONVERSATION,
        conversation_id=conversation.pk,
        team_id=conversation.team_id,
        change="resolved_automated",
    )
    return True
