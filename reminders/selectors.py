"""Reads for reminders."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Case, IntegerField, Value, When

from channels_app.models import ChannelAccount, Conversation
from contactcenter.models import Team
from patients.models import Appointment
from reminders.models import Reminder, ReminderPolicy

ACTIVE_APPOINTMENT_STATUSES = (Appointment.Status.BOOKED, Appointment.Status.CONFIRMED)
REPLY_WINDOW = timedelta(hours=72)


def default_policy():
    """The policy that plans every appointment's reminders, with its templates; None
    when an admin removed it (then nothing is planned)."""
    return ReminderPolicy.objects.filter(is_default=True).prefetch_related("templates").first()


def practice_account(*, kind, team):
    """The practice's first active account of this kind (by name), the team's own if
    it has one."""
    accounts = ChannelAccount.objects.filter(kind=kind, active=True).order_by("name", "address")
    return accounts.filter(team=team).first() or accounts.first()


def scheduling_team():
    """The team reschedule requests go to (setting REMINDERS_SCHEDULING_TEAM, a team
    name); None means the conversation's own team."""
    name = getattr(settings, "REMINDERS_SCHEDULING_TEAM", "")
    return Team.objects.filter(name=name).first() if name else None


def patient_conversation(*, patient, channel, account=None, contact_index=None):
    """The patient's conversation on this channel (and practice account and contact
    address, when given): an active one first, else the latest resolved one."""
    queryset = Conversation.objects.filter(patient=patient, channel=channel)
    if account is not None:
        queryset = queryset.filter(account=account)
    if contact_index is not None:
        queryset = queryset.filter(contact_index=contact_index)
    return (
        queryset.annotate(
            is_resolved=Case(
                When(status=Conversation.Status.RESOLVED, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        .order_by("is_resolved", "-last_interaction_at")
        .first()
    )


def reminders_answerable(*, patient_ids, now):
    """Reminders a reply from one of these patients can answer: sent in the last 72 h
    for an appointment that is still ahead and still booked or confirmed. Latest first."""
    return (
        Reminder.objects.select_related("appointment__patient")
        .filter(
            state=Reminder.State.SENT,
            sent_at__gte=now - REPLY_WINDOW,
            appointment__patient_id__in=patient_ids,
            appointment__starts_at__gt=now,
            appointment__status__in=ACTIVE_APPOINTMENT_STATUSES,
        )
        .order_by("-sent_at", "-pk")
    )


def reminder_superseded(*, reminder, by):
    """Whether a reminder with a smaller offset of the same appointment is due by
    then: after an outage the closer one alone goes out."""
    return Reminder.objects.filter(
        appointment_id=reminder.appointment_id,
        state=Reminder.State.SCHEDULED,
        offset_minutes__lt=reminder.offset_minutes,
        planned_at__lte=by,
    ).exists()


def reminders_of_appointments(*, appointments):
    """The reminders of these appointments (a queryset the caller already limited
    to what it may see)."""
    return Reminder.objects.filter(appointment__in=appointments)
