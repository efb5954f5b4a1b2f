"""Writes for reminders: planning them when an appointment changes, dispatching the
due ones through the outbound pipeline, taking C/R replies, and the no-show risk.

Where reminders show on the patient's timeline
----------------------------------------------
A sent reminder is its outbound message (metadata ``reminder_id``). Planning,
replanning, cancelling and every skip are timeline events (``event_record``) with
the reminder and appointment ids in their metadata. Both go on the patient's
*reminder conversation*: the patient's conversation on the channel the reminders
use (the first channel of the policy's order that has a template; an SMS one on the
practice's SMS number and the patient's phone), an active one first, else the latest
resolved one. When there is none, one is opened for the patient's team and marked
resolved at once: a reminder asks nothing of staff, so thousands of them must not
fill the inbox. A reply opens an inbox conversation as any inbound message does
(the SMS webhook threads only into active conversations); C and R replies are
handled on it, and the event goes there.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Prefetch
from django.utils import timezone

from channels_app.models import Conversation, Interaction, OutboundMessage
from channels_app.services import (
    conversation_move_to_team,
    conversation_open,
    conversation_reopen,
    conversation_set_labels,
    conversation_set_priority,
    event_record,
    outbound_create,
)
from contactcenter.templating import render_template
from patients.models import Appointment, Channel, ContactPoint
from patients.selectors import patients_by_phone
from patients.services import appointment_update, consent_check
from reminders import selectors
from reminders.defaults import DEFAULT_POLICY_NAME, DEFAULT_TEMPLATES
from reminders.models import (
    AppointmentRisk,
    Reminder,
    ReminderPolicy,
    ReminderReply,
    ReminderTemplate,
)
from reminders.planning import (
    DEFAULT_GRACE,
    SKIP_QUIET_HOURS,
    SKIP_SAME_TIME,
    SKIP_TOO_LATE,
    format_local,
    plan_reminders,
    quiet_hours_end,
)
from reminders.risk import FLAGS, UNCONFIRMED_AFTER_OFFSET_MINUTES, RiskInputs, risk_score

logger = structlog.stdlib.get_logger(__name__)

ACTIVE_STATUSES = selectors.ACTIVE_APPOINTMENT_STATUSES
# Channels a reminder can go out on; voice has no outbound adapter.
REMINDER_CHANNELS = (Channel.SMS, Channel.EMAIL, Channel.PORTAL)
_CONTACT_KIND = {Channel.SMS: ContactPoint.Kind.PHONE, Channel.EMAIL: ContactPoint.Kind.EMAIL}
REMINDER_SUBJECT = "Appointment reminder"

# Skip reasons decided at dispatch (planning.py names those decided when planning).
SKIP_NOT_BOOKED = "appointment_not_booked"
SKIP_STARTED = "appointment_started"
SKIP_CONFIRMED = "confirmed"
SKIP_SUPERSEDED = "superseded"
SKIP_NO_CONTACT_POINT = "no_contact_point"
SKIP_NO_SMS_ACCOUNT = "no_sms_account"
SKIP_NO_TEMPLATE = "no_template"
SKIP_INVALID_TIME_ZONE = "invalid_time_zone"
CANCEL_NOT_PLANNED = "no_longer_planned"
CANCEL_RISK_LOWERED = "risk_lowered"
_PLANNING_REASONS = {SKIP_QUIET_HOURS, SKIP_SAME_TIME, SKIP_TOO_LATE, SKIP_INVALID_TIME_ZONE}
# plan_reminders is asked with a "now" this early, so it never judges lateness: a
# row already scheduled at the same time stays scheduled, however late the
# dispatcher is (see _desired_plan).
_PLAN_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

CONFIRM_REPLIES = frozenset({"C", "1"})
RESCHEDULE_REPLIES = frozenset({"R", "2"})
RESCHEDULE_LABEL = "reschedule"


# --- Shared pieces ----------------------------------------------------------------


class _Context:
    """A policy with its templates and the practice accounts, looked up once per
    planning or dispatch run rather than once per reminder."""

    def __init__(self, policy):
        self.policy = policy
        self.templates = {(t.channel, t.language): t for t in policy.templates.all()}
        self._accounts = {}

    def account(self, kind, team):
        key = (kind, team.pk)
        if key not in self._accounts:
            self._accounts[key] = selectors.practice_account(kind=kind, team=team)
        return self._accounts[key]

    def channels_for(self, patient):
        """The patient's reminder channels in the policy's order, those with a template."""
        with_template = {channel for channel, _language in self.templates}
        channels = []
        for entry in self.policy.channel_order:
            channel = patient.preferred_channel if entry == ReminderPolicy.PREFERRED else entry
            if (
                channel in REMINDER_CHANNELS
                and channel in with_template
                and channel not in channels
            ):
                channels.append(channel)
        return channels

    def template(self, channel, language):
        """The template in the patient's language (es-MX, then es), else English,
        else any language of the channel."""
        tag = (language or "").strip().lower().replace("_", "-")
        for candidate in (tag, tag.split("-")[0], "en"):
            template = self.templates.get((channel, candidate))
            if template is not None:
                return template
        return next((t for (kind, _), t in sorted(self.templates.items()) if kind == channel), None)

    def practice_phone(self, team):
        if self.policy.practice_phone:
            return self.policy.practice_phone
        account = self.account(Channel.SMS, team)
        return account.address if account else ""


def _aware(value):
    """An appointment's start as an aware datetime: a caller may have created it
    with an ISO string, which the signal then carries as it was given."""
    value = Appointment._meta.get_field("starts_at").to_python(value)
    return timezone.make_aware(value, UTC) if timezone.is_naive(value) else value


def _known_time_zone(name):
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return False
    return True


def _minutes(offset):
    return int(offset.total_seconds()) // 60


def _offset_text(minutes):
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _local_text(moment, patient, language="en"):
    try:
        local = format_local(moment, time_zone=patient.time_zone, language=language)
    except ValueError:
        local = format_local(moment, time_zone="UTC", language=language)
    return f"{local['date']} at {local['time']}"


def _contact_point(patient, channel):
    """The contact point a message on this channel goes to: the preferred one of its
    kind, else the oldest. Consent is then checked for that very address."""
    kind = _CONTACT_KIND.get(channel)
    if kind is None:
        return None
    points = sorted(
        (cp for cp in patient.contact_points.all() if cp.kind == kind),
        key=lambda cp: (not cp.preferred, cp.created_at, str(cp.pk)),
    )
    return points[0] if points else None


def _reminder_conversation(*, patient, channel, account, point):
    """The patient's reminder conversation on this channel (see the module docstring)."""
    conversation = selectors.patient_conversation(
        patient=patient,
        channel=channel,
        account=account,
        contact_index=point.value_index if point else None,
    )
    if conversation is None:
        conversation = conversation_open(
            channel=channel,
            team=patient.team,
            account=account,
            patient=patient,
            contact_address=point.value if point else "",
            contact_index=point.value_index if point else "",
            subject=REMINDER_SUBJECT if channel == Channel.EMAIL else "",
            status=Conversation.Status.RESOLVED,
        )
    # The caller's instance has the contact points loaded; consent checks reuse them.
    conversation.patient = patient
    return conversation


def _timeline_conversation(*, patient, ctx):
    channels = ctx.channels_for(patient)
    channel = channels[0] if channels else patient.preferred_channel
    account = ctx.account(channel, patient.team) if channel in REMINDER_CHANNELS else None
    return _reminder_conversation(
        patient=patient, channel=channel, account=account, point=_contact_point(patient, channel)
    )


# --- Policies ----------------------------------------------------------------------


@transaction.atomic
def reminder_policy_create_default():
    """The default policy with the templates that ship (reminders.defaults), unless a
    default exists. Migration 0002 does the same on a new database."""
    existing = selectors.default_policy()
    if existing is not None:
        return existing
    policy = ReminderPolicy.objects.create(name=DEFAULT_POLICY_NAME, is_default=True)
    for channel, language, body in DEFAULT_TEMPLATES:
        ReminderTemplate.objects.create(
            policy=policy, channel=channel, language=language, body=body
        )
    return selectors.default_policy()


# --- No-show risk -------------------------------------------------------------------


def _risk_scores(*, appointments, now):
    """{appointment id: (score, factors)}, in two queries however many appointments:
    the dispatcher scores a whole batch at once."""
    history = defaultdict(list)
    for patient_id, pk, starts_at, status in Appointment.objects.filter(
        patient_id__in={appointment.patient_id for appointment in appointments},
        status__in=(Appointment.Status.NOSHOW, Appointment.Status.FULFILLED),
    ).values_list("patient_id", "pk", "starts_at", "status"):
        history[patient_id].append((pk, starts_at, status))
    booked = [a.pk for a in appointments if a.status == Appointment.Status.BOOKED]
    reminded = set(
        Reminder.objects.filter(
            appointment_id__in=booked,
            state=Reminder.State.SENT,
            offset_minutes__gte=UNCONFIRMED_AFTER_OFFSET_MINUTES,
        ).values_list("appointment_id", flat=True)
        if booked
        else ()
    )
    scores = {}
    for appointment in appointments:
        starts_at = _aware(appointment.starts_at)
        earlier = [
            status
            for pk, started, status in history[appointment.patient_id]
            if pk != appointment.pk and started < starts_at
        ]
        patient = appointment.patient
        scores[appointment.pk] = risk_score(
            RiskInputs(
                prior_noshows=earlier.count(Appointment.Status.NOSHOW),
                prior_attended=earlier.count(Appointment.Status.FULFILLED),
                lead_time=starts_at - (appointment.created_at or now),
                unconfirmed_after_reminder=appointment.pk in reminded,
                flags=tuple(flag for flag in FLAGS if getattr(patient, flag, False)),
            )
        )
    return scores


def _risks_store(*, scores, now):
    risks = [
        AppointmentRisk(appointment_id=pk, score=score, factors=factors, computed_at=now)
        for pk, (score, factors) in sorted(scores.items(), key=lambda item: str(item[0]))
    ]
    # One statement whoever wrote a row first (a planner or a dispatcher).
    AppointmentRisk.objects.bulk_create(
        risks,
        update_conflicts=True,
        unique_fields=["appointment"],
        update_fields=["score", "factors", "computed_at"],
    )
    return {risk.appointment_id: risk for risk in risks}


def appointment_risk_update(*, appointment, now=None):
    """Recompute and store the appointment's no-show risk (formula in reminders.risk)."""
    now = now or timezone.now()
    scores = _risk_scores(appointments=[appointment], now=now)
    return _risks_store(scores=scores, now=now)[appointment.pk]


# --- Planning ----------------------------------------------------------------------


def _desired_plan(*, appointment, starts_at, policy, offsets, rows, now):
    """{offset minutes: (state, planned_at, skip_reason)} for the appointment now."""
    time_zone = appointment.patient.time_zone
    if not _known_time_zone(time_zone):
        # Guessing a zone could wake the patient at night: nothing is sent.
        return dict.fromkeys(offsets, (Reminder.State.SKIPPED, None, SKIP_INVALID_TIME_ZONE))
    planned = plan_reminders(
        starts_at=starts_at,
        now=_PLAN_EPOCH,
        offsets=[timedelta(minutes=minutes) for minutes in offsets],
        time_zone=time_zone,
        quiet_start=policy.quiet_start,
        quiet_end=policy.quiet_end,
    )
    desired = {}
    for reminder in planned:
        minutes = _minutes(reminder.offset)
        if reminder.skip_reason:
            desired[minutes] = (Reminder.State.SKIPPED, None, reminder.skip_reason)
            continue
        row = rows.get(minutes)
        unchanged = (
            row is not None
            and row.state == Reminder.State.SCHEDULED
            and row.planned_at == reminder.send_at
        )
        if reminder.send_at < now - DEFAULT_GRACE and not unchanged:
            desired[minutes] = (Reminder.State.SKIPPED, reminder.send_at, SKIP_TOO_LATE)
        else:
            desired[minutes] = (Reminder.State.SCHEDULED, reminder.send_at, "")
    return desired


def _apply_plan(*, appointment, starts_at, ctx, rows, score, now):
    policy = ctx.policy
    offsets = list(policy.offsets_minutes)
    extra = policy.high_risk_extra_offset_minutes
    if extra and extra not in offsets and score >= policy.high_risk_threshold:
        offsets.append(extra)
    desired = _desired_plan(
        appointment=appointment,
        starts_at=starts_at,
        policy=policy,
        offsets=offsets,
        rows=rows,
        now=now,
    )
    created, changed = [], []
    for minutes, (state, planned_at, reason) in desired.items():
        row = rows.pop(minutes, None)
        if row is None:
            created.append(
                Reminder(
                    appointment=appointment,
                    policy=policy,
                    offset_minutes=minutes,
                    is_extra=minutes not in policy.offsets_minutes,
                    state=state,
                    planned_at=planned_at,
                    skip_reason=reason,
                )
            )
            continue
        if row.state in Reminder.FINAL_STATES:
            continue  # never sent twice
        if (
            row.state == Reminder.State.SKIPPED
            and row.skip_reason not in _PLANNING_REASONS
            and not (state == Reminder.State.SCHEDULED and planned_at != row.planned_at)
        ):
            # Skipped at dispatch (opted out, no contact point, ...): it stands until
            # the appointment moves and gives it a new time.
            continue
        if (row.state, row.planned_at, row.skip_reason) != (state, planned_at, reason):
            row.state, row.planned_at, row.skip_reason = state, planned_at, reason
            row.save(update_fields=["state", "planned_at", "skip_reason", "updated_at"])
            changed.append(row)
    for row in rows.values():
        if row.state == Reminder.State.SCHEDULED:
            reason = CANCEL_RISK_LOWERED if row.is_extra else CANCEL_NOT_PLANNED
            changed.append(_cancel(row, reason))
    Reminder.objects.bulk_create(created)
    return created + changed


def _cancel(row, reason):
    row.state, row.skip_reason = Reminder.State.CANCELLED, reason
    row.save(update_fields=["state", "skip_reason", "updated_at"])
    return row


def _describe(row, patient):
    what = f"{_offset_text(row.offset_minutes)} before"
    if row.is_extra:
        what += ", extra for a high no-show risk"
    if row.state == Reminder.State.SCHEDULED:
        return f"{_local_text(row.planned_at, patient)} ({what})"
    return f"{what}: {row.state} ({row.skip_reason})"


def _record_plan_event(*, appointment, starts_at, rows, ctx, title, code):
    patient = appointment.patient
    ordered = sorted(rows, key=lambda row: -row.offset_minutes)
    text = (
        f"{title} for the appointment on {_local_text(starts_at, patient)}: "
        + "; ".join(_describe(row, patient) for row in ordered)
        + "."
    )
    event_record(
        conversation=_timeline_conversation(patient=patient, ctx=ctx),
        text=text,
        metadata={
            "reminders": code,
            "appointment_id": str(appointment.pk),
            "reminder_ids": [row.pk for row in ordered],
        },
    )


def reminders_plan(*, appointment, now=None, policy=None):
    """(Re)plan the appointment's reminders and recompute its no-show risk; the
    receiver of appointment_changed, inside the write's transaction.

    A booked or confirmed appointment gets one row per offset of the policy (plus the
    extra one while its risk is high), planned in the patient's time zone around
    quiet hours; rows not yet sent follow a move; a sent one is never planned again.
    Any other status cancels the pending rows. Returns the rows created or changed;
    when there are any, the change is an event on the patient's timeline."""
    now = now or timezone.now()
    policy = policy or selectors.default_policy()
    starts_at = _aware(appointment.starts_at)
    scores = _risk_scores(appointments=[appointment], now=now)
    score = scores[appointment.pk][0]
    changed = []
    if policy is not None:
        ctx = _Context(policy)
        rows = {
            row.offset_minutes: row
            for row in Reminder.objects.select_for_update()
            .filter(appointment=appointment)
            .order_by("pk")
        }
        if appointment.status in ACTIVE_STATUSES:
            title, code = (
                ("Reminders replanned", "replanned") if rows else ("Reminders planned", "planned")
            )
            changed = _apply_plan(
                appointment=appointment,
                starts_at=starts_at,
                ctx=ctx,
                rows=rows,
                score=score,
                now=now,
            )
        else:
            title, code = "Reminders cancelled", "cancelled"
            reason = f"appointment_{appointment.status}"
            changed = [
                _cancel(row, reason)
                for row in rows.values()
                if row.state == Reminder.State.SCHEDULED
            ]
        if changed:
            _record_plan_event(
                appointment=appointment,
                starts_at=starts_at,
                rows=changed,
                ctx=ctx,
                title=title,
                code=code,
            )
    # Stored after the rows are locked, so this planner and a dispatcher take their
    # locks in the same order (reminder rows, then the risk row).
    _risks_store(scores=scores, now=now)
    return changed


def _extra_reminder_add(*, appointment, starts_at, ctx, score, now):
    """The high-risk extra reminder, when the risk rose at a send. Inserted, never
    locking the other rows (the dispatcher holds one of them)."""
    policy = ctx.policy
    extra = policy.high_risk_extra_offset_minutes
    if not extra or extra in policy.offsets_minutes:
        return None
    existing = {
        row.offset_minutes: row
        for row in Reminder.objects.filter(appointment=appointment).only(
            "offset_minutes", "state", "planned_at"
        )
    }
    if extra in existing:
        return None
    desired = _desired_plan(
        appointment=appointment,
        starts_at=starts_at,
        policy=policy,
        offsets=[*policy.offsets_minutes, extra],
        rows=existing,
        now=now,
    )
    state, planned_at, reason = desired[extra]
    row = Reminder(
        appointment=appointment,
        policy=policy,
        offset_minutes=extra,
        is_extra=True,
        state=state,
        planned_at=planned_at,
        skip_reason=reason,
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return None  # a planner added it at the same moment
    _record_plan_event(
        appointment=appointment,
        starts_at=starts_at,
        rows=[row],
        ctx=ctx,
        title=f"Extra reminder planned (no-show risk {score:.2f})",
        code="extra_planned",
    )
    return row


# --- Dispatch ----------------------------------------------------------------------


@dataclass
class DispatchSummary:
    sent: int = 0
    skipped: int = 0
    postponed: int = 0
    failed: int = 0
    retried: int = 0
    # Stopped at the time budget with due reminders left.
    more: bool = False


@dataclass(frozen=True)
class _Choice:
    channel: str
    account: object
    point: object
    address: str


def _choose_channel(*, patient, ctx):
    """The first channel of the patient's order that can take the reminder, or the
    reason none can: an opt-out or other refusal rather than a missing contact
    point when both occur, since it says more."""
    reasons = []
    for channel in ctx.channels_for(patient):
        account = ctx.account(channel, patient.team)
        if channel == Channel.SMS and account is None:
            reasons.append(SKIP_NO_SMS_ACCOUNT)
            continue
        point = _contact_point(patient, channel)
        if channel in _CONTACT_KIND and point is None:
            reasons.append(SKIP_NO_CONTACT_POINT)
            continue
        decision = consent_check(
            patient=patient, channel=channel, address=point.value if point else None
        )
        if not decision.allowed:
            reasons.append(decision.reason or "refused")
            continue
        return _Choice(channel, account, point, decision.address), ""
    telling = [reason for reason in reasons if reason != SKIP_NO_CONTACT_POINT]
    return None, (telling or reasons or [SKIP_NO_TEMPLATE])[0]


def _skip(*, reminder, reason, ctx):
    reminder.state, reminder.skip_reason = Reminder.State.SKIPPED, reason
    reminder.save(update_fields=["state", "skip_reason", "updated_at"])
    appointment = reminder.appointment
    patient = appointment.patient
    event_record(
        conversation=_timeline_conversation(patient=patient, ctx=ctx),
        text=f"Reminder ({_offset_text(reminder.offset_minutes)} before) for the appointment "
        f"on {_local_text(appointment.starts_at, patient)} skipped: {reason}.",
        metadata={
            "reminders": "skipped",
            "reminder_id": reminder.pk,
            "appointment_id": str(appointment.pk),
            "skip_reason": reason,
        },
    )
    return "skipped"


def _dispatch_one(*, reminder, ctx, now, wait_for_quiet_hours=True):
    appointment = reminder.appointment
    patient = appointment.patient
    policy = ctx.policy
    starts_at = appointment.starts_at
    if appointment.status not in ACTIVE_STATUSES:
        return _skip(reminder=reminder, reason=SKIP_NOT_BOOKED, ctx=ctx)
    if starts_at <= now:
        return _skip(reminder=reminder, reason=SKIP_STARTED, ctx=ctx)
    if appointment.status == Appointment.Status.CONFIRMED and policy.stop_after_confirmation:
        return _skip(reminder=reminder, reason=SKIP_CONFIRMED, ctx=ctx)
    if reminder.planned_at < now - DEFAULT_GRACE and selectors.reminder_superseded(
        reminder=reminder, by=now
    ):
        return _skip(reminder=reminder, reason=SKIP_SUPERSEDED, ctx=ctx)
    try:
        quiet_until = quiet_hours_end(
            now,
            time_zone=patient.time_zone,
            quiet_start=policy.quiet_start,
            quiet_end=policy.quiet_end,
        )
    except ValueError:
        return _skip(reminder=reminder, reason=SKIP_INVALID_TIME_ZONE, ctx=ctx)
    if quiet_until is not None and wait_for_quiet_hours:
        # Reached late (an outage) and now in quiet hours: it waits for the morning,
        # unless the appointment or a closer reminder comes first.
        if quiet_until >= starts_at:
            return _skip(reminder=reminder, reason=SKIP_QUIET_HOURS, ctx=ctx)
        if selectors.reminder_superseded(reminder=reminder, by=quiet_until):
            return _skip(reminder=reminder, reason=SKIP_SUPERSEDED, ctx=ctx)
        reminder.planned_at = quiet_until
        reminder.save(update_fields=["planned_at", "updated_at"])
        return "postponed"
    choice, reason = _choose_channel(patient=patient, ctx=ctx)
    if choice is None:
        return _skip(reminder=reminder, reason=reason, ctx=ctx)
    template = ctx.template(choice.channel, patient.preferred_language)
    body = render_template(
        template.body,
        {
            "first_name": patient.given_name,
            **format_local(starts_at, time_zone=patient.time_zone, language=template.language),
            "location": appointment.location or settings.PRACTICE_NAME,
            "practice_phone": ctx.practice_phone(patient.team),
        },
    )
    conversation = _reminder_conversation(
        patient=patient, channel=choice.channel, account=choice.account, point=choice.point
    )
    outbound = outbound_create(
        conversation=conversation,
        body=body,
        metadata={"reminder_id": reminder.pk, "appointment_id": str(appointment.pk)},
        to_address=choice.address or None,
    ).outbound
    reminder.channel, reminder.outbound = choice.channel, outbound
    if outbound.state == OutboundMessage.State.FAILED:
        reminder.state, reminder.skip_reason = Reminder.State.FAILED, outbound.last_error[:40]
    else:
        reminder.state, reminder.sent_at = Reminder.State.SENT, now
    reminder.save(
        update_fields=["state", "skip_reason", "channel", "outbound", "sent_at", "updated_at"]
    )
    return "sent" if reminder.state == Reminder.State.SENT else "failed"


def reminder_send_now(*, reminder_id, now=None):
    """Send one scheduled reminder at once, through the dispatcher's own steps
    (channel, consent, template, delivery record), without waiting for its planned
    time or the patient's quiet hours: a person chose to send it now (the demo
    scenario of `manage.py simulate_inbound`). Returns "sent", "failed" or
    "skipped" (the reason stored, as the dispatcher does), or None when the reminder
    is not scheduled any more."""
    now = now or timezone.now()
    with transaction.atomic():
        reminder = (
            Reminder.objects.select_for_update(of=("self",))
            .select_related("appointment__patient__team__group", "policy")
            .prefetch_related("appointment__patient__contact_points")
            .filter(pk=reminder_id, state=Reminder.State.SCHEDULED)
            .first()
        )
        if reminder is None:
            return None
        return _dispatch_one(
            reminder=reminder, ctx=_Context(reminder.policy), now=now, wait_for_quiet_hours=False
        )


def _dispatch_guarded(*, reminder, ctx, now):
    """One reminder in its own savepoint, so one that cannot be sent never holds up
    the batch: a lock conflict leaves it scheduled for the next run, any other error
    marks it failed (visible, and never retried in a loop)."""
    try:
        with transaction.atomic():
            return _dispatch_one(reminder=reminder, ctx=ctx, now=now)
    except SoftTimeLimitExceeded:
        raise
    except OperationalError as error:
        logger.warning(
            "reminder_dispatch_retry", reminder_id=reminder.pk, error=error.__class__.__name__
        )
        return "retried"
    except Exception as error:
        # The class name only: messages may quote patient data.
        logger.warning(
            "reminder_dispatch_failed", reminder_id=reminder.pk, error=error.__class__.__name__
        )
        Reminder.objects.filter(pk=reminder.pk).update(
            state=Reminder.State.FAILED,
            skip_reason=f"error {error.__class__.__name__}"[:40],
            updated_at=timezone.now(),
        )
        return "failed"


def _rescore_after_sends(*, reminders, contexts, now):
    """A sent reminder may raise its appointment's no-show risk (unconfirmed after a
    reminder): the batch's appointments are scored together, and those now at high
    risk get their extra reminder. In its own savepoint: a failure here is logged and
    leaves the sends of the batch standing."""
    if not reminders:
        return
    try:
        with transaction.atomic():
            appointments = {reminder.appointment_id: reminder.appointment for reminder in reminders}
            scores = _risk_scores(appointments=list(appointments.values()), now=now)
            _risks_store(scores=scores, now=now)
            for reminder in reminders:
                ctx = contexts[reminder.policy_id]
                score = scores[reminder.appointment_id][0]
                if score >= ctx.policy.high_risk_threshold:
                    _extra_reminder_add(
                        appointment=reminder.appointment,
                        starts_at=reminder.appointment.starts_at,
                        ctx=ctx,
                        score=score,
                        now=now,
                    )
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        logger.warning("reminder_rescore_failed", error=error.__class__.__name__)


def _lock_due_batch(*, now, batch_size):
    return list(
        Reminder.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("appointment__patient__team__group", "policy")
        .prefetch_related(
            Prefetch(
                "appointment__patient__contact_points",
                queryset=ContactPoint.objects.order_by("created_at", "id"),
            )
        )
        .filter(state=Reminder.State.SCHEDULED, planned_at__lte=now)
        .order_by("planned_at")[:batch_size]
    )


def reminders_dispatch_due(*, now=None, batch_size=200, time_budget_seconds=None):
    """Send every reminder due at now through the outbound pipeline, batch by batch.

    Each batch is claimed with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent
    dispatchers take disjoint batches, and is one transaction: a reminder's delivery
    record and its move to "sent" commit together, so each reminder is sent once
    however many dispatchers run. A reminder is skipped, with the reason stored and
    an event on the timeline, when its appointment is no longer booked or confirmed,
    was confirmed and the policy stops there, when a closer reminder of the same
    appointment is also due, or when no channel can take it (opted out, no contact
    point). Returns a DispatchSummary."""
    now = now or timezone.now()
    started = time.monotonic()
    summary = DispatchSummary()
    contexts = {}
    while True:
        with transaction.atomic():
            batch = _lock_due_batch(now=now, batch_size=batch_size)
            # Patient by patient in every dispatcher, so two of them touching the same
            # conversations take those locks in the same order; the larger offset
            # first, so it sees whether a closer reminder supersedes it.
            batch.sort(
                key=lambda r: (str(r.appointment.patient_id), r.appointment_id, -r.offset_minutes)
            )
            progressed, sent = 0, []
            for reminder in batch:
                ctx = contexts.get(reminder.policy_id)
                if ctx is None:
                    ctx = contexts[reminder.policy_id] = _Context(reminder.policy)
                outcome = _dispatch_guarded(reminder=reminder, ctx=ctx, now=now)
                setattr(summary, outcome, getattr(summary, outcome) + 1)
                progressed += outcome != "retried"
                if outcome == "sent":
                    sent.append(reminder)
            _rescore_after_sends(reminders=sent, contexts=contexts, now=now)
        if len(batch) < batch_size or not progressed:
            return summary
        if time_budget_seconds is not None and time.monotonic() - started > time_budget_seconds:
            summary.more = True
            return summary


# --- Replies -----------------------------------------------------------------------


def reminder_reply_action(body):
    """confirm or reschedule for a whole-message reply (any case), else None."""
    word = (body or "").strip().upper()
    if word in CONFIRM_REPLIES:
        return ReminderReply.Action.CONFIRM
    if word in RESCHEDULE_REPLIES:
        return ReminderReply.Action.RESCHEDULE
    return None


def _reply_patient_ids(interaction):
    patient_id = interaction.patient_id or interaction.conversation.patient_id
    if patient_id:
        return [patient_id]
    # A shared family line leaves the conversation unmatched; the reply still answers
    # a reminder when exactly one patient on the number has one outstanding.
    address = interaction.conversation.contact_address
    if not address:
        return []
    try:
        return list(patients_by_phone(raw_phone=address).values_list("pk", flat=True))
    except ValueError:
        return []


def _flag_reschedule(*, conversation, metadata):
    """Label the conversation "reschedule", raise it to high priority, open it and
    move it to the scheduling team (setting REMINDERS_SCHEDULING_TEAM; by default
    it stays with its team), each through channels_app's services: the new team
    gains access, the old one loses it, an assignee outside the new team lets go."""
    conversation = (
        Conversation.objects.select_for_update().select_related("team").get(pk=conversation.pk)
    )
    conversation_set_labels(
        conversation=conversation,
        labels=[*conversation.labels, RESCHEDULE_LABEL],
        metadata=metadata,
    )
    if conversation.priority < Conversation.Priority.HIGH:
        conversation_set_priority(
            conversation=conversation,
            priority=Conversation.Priority.HIGH,
            reason="reschedule request",
            metadata=metadata,
        )
    conversation_reopen(conversation=conversation, metadata=metadata)
    team = selectors.scheduling_team() or conversation.team
    conversation_move_to_team(conversation=conversation, team=team, metadata=metadata)
    return conversation


def reminder_reply_handle(*, interaction, now=None):
    """Receiver of interaction_received: an inbound SMS that is exactly C or 1
    (confirm) or R or 2 (reschedule), from a patient with a reminder sent in the last
    72 h for an appointment still ahead, confirms the appointment or flags the
    conversation as a reschedule request, with an event on the timeline. Idempotent:
    the same interaction a second time changes nothing. Anything else is left to the
    inbox. Returns the ReminderReply, or None."""
    if (
        interaction.channel != Channel.SMS
        or interaction.direction != Interaction.Direction.INBOUND
        or interaction.kind != Interaction.Kind.MESSAGE
    ):
        return None
    action = reminder_reply_action(interaction.body)
    if action is None:
        return None
    now = now or timezone.now()
    patient_ids = _reply_patient_ids(interaction)
    if not patient_ids:
        return None
    with transaction.atomic():
        candidates = list(selectors.reminders_answerable(patient_ids=patient_ids, now=now)[:20])
        if len({reminder.appointment.patient_id for reminder in candidates}) != 1:
            return None  # none, or a shared line with several: staff decide
        reminder = candidates[0]
        try:
            with transaction.atomic():
                reply = ReminderReply.objects.create(
                    interaction=interaction, reminder=reminder, action=action
                )
        except IntegrityError:
            return None  # handled already
        appointment = reminder.appointment
        patient = appointment.patient
        word = interaction.body.strip().upper()
        when = _local_text(appointment.starts_at, patient)
        conversation = interaction.conversation
        if action == ReminderReply.Action.CONFIRM:
            if appointment.status == Appointment.Status.BOOKED:
                # Through the patients service, so the change is planned and scored
                # like any other (appointment_changed).
                appointment_update(appointment=appointment, status=Appointment.Status.CONFIRMED)
            text = f"Reply {word}: the appointment on {when} is confirmed."
        else:
            conversation = _flag_reschedule(
                conversation=conversation,
                metadata={"reschedule_of_reminder": reminder.pk},
            )
            appointment_risk_update(appointment=appointment, now=now)
            text = (
                f"Reply {word}: the patient asks to reschedule the appointment on {when}; "
                f"flagged for {conversation.team.name}."
            )
        if conversation.patient_id != patient.pk:
            conversation = _timeline_conversation(patient=patient, ctx=_Context(reminder.policy))
        event_record(
            conversation=conversation,
            text=text,
            metadata={
                "reminders": f"reply_{action}",
                "reminder_id": reminder.pk,
                "appointment_id": str(appointment.pk),
                "interaction_id": str(interaction.pk),
            },
        )
    return reply
