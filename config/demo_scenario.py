"""A short day at the demo practice, played by `manage.py simulate_inbound --scenario`
against the running project (web, worker and beat) with the demo data loaded:

1. a reminder goes out to Maria Garcia (DEMO-1001) and she confirms it by replying C;
2. James Smith (DEMO-1002) emails a billing question;
3. Aiko Tanaka (DEMO-1003) texts that she has chest pain: the emergency rule
   escalates the conversation to the clinical team and answers her at once;
4. a caller the practice does not know leaves a voicemail.

Every inbound message goes through the real webhook over HTTP (channels_app.simulation);
the reminder is sent by the reminders app's own dispatch steps. Each step then waits,
reading the database, until the worker has done its part, so the summary it prints is
what happened, not what was asked. Like this module (beside urls.py and demo.py), the
scenario sits on top of the apps. It prints ids and outcomes, never message text."""

import time
from dataclasses import dataclass, field

from django.db import close_old_connections
from django.utils import timezone

from channels_app.models import ChannelAccount, Conversation, Interaction, OutboundMessage
from channels_app.serializers import mask_address
from contactcenter.blind_index import mrn_index
from escalation.models import Escalation
from patients.models import Appointment, Channel, ContactPoint, Patient
from reminders.models import Reminder
from reminders.services import reminder_send_now

REMINDER_PATIENT, BILLING_PATIENT, DISTRESSED_PATIENT = "DEMO-1001", "DEMO-1002", "DEMO-1003"
UNKNOWN_CALLER = "+14155550199"

BILLING_SUBJECT = "Question about my bill"
BILLING_BODY = (
    "Hello,\n\nI received a bill for $180 for my visit last month, but my insurance "
    "should cover it. Could someone explain the charge?\n\nThanks,\nJames"
)
DISTRESSED_BODY = (
    "I've had chest pain since this morning and now I feel dizzy. I'm really scared, "
    "what should I do?"
)
VOICEMAIL_TRANSCRIPT = (
    "Hi, this is Dana. I just moved to the area and would like to register as a new "
    "patient. Please call me back at this number. Thank you."
)


class ScenarioError(Exception):
    pass


@dataclass
class ScenarioReport:
    """What the scenario did, by step, for the command to print and tests to check."""

    lines: list = field(default_factory=list)
    conversations: dict = field(default_factory=dict)

    def say(self, text):
        self.lines.append(text)


def _wait(predicate, *, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        # Each poll reads what the worker committed since (a fresh transaction).
        close_old_connections()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ScenarioError(
                f"Waited {timeout:.0f} s for {what}. Is the worker running (make run)?"
            )
        time.sleep(0.2)


def _demo_patient(mrn):
    patient = Patient.objects.filter(mrn_index=mrn_index(mrn)).first()
    if patient is None:
        raise ScenarioError(f"No demo patient {mrn}: load the demo data (manage.py load_demo).")
    return patient


def _contact(patient, kind):
    points = sorted(
        ContactPoint.objects.filter(patient=patient, kind=kind),
        key=lambda point: (not point.preferred, point.created_at),
    )
    if not points:
        raise ScenarioError(f"The demo patient has no {kind}.")
    return points[0].value


def practice_account(kind):
    account = ChannelAccount.objects.filter(kind=kind, active=True).order_by("name").first()
    if account is None:
        raise ScenarioError(f"No active {kind} channel account: load the demo data.")
    return account


def _interaction(channel, provider_id, *, timeout=5):
    return _wait(
        lambda: (
            Interaction.objects.filter(channel=channel, provider_id=provider_id)
            .select_related("conversation__team")
            .first()
        ),
        timeout=timeout,
        what=f"the {channel} to be stored",
    )


def _delivered(outbound_id, *, timeout):
    return _wait(
        lambda: OutboundMessage.objects.filter(
            pk=outbound_id, state__in=OutboundMessage.FINAL_STATES
        ).first(),
        timeout=timeout,
        what="the local provider to deliver the message",
    )


def _step_reminder(simulator, report, *, timeout):
    patient = _demo_patient(REMINDER_PATIENT)
    phone = _contact(patient, ContactPoint.Kind.PHONE)
    reminder = (
        Reminder.objects.filter(
            appointment__patient=patient,
            appointment__starts_at__gt=timezone.now(),
            appointment__status=Appointment.Status.BOOKED,
            state=Reminder.State.SCHEDULED,
        )
        .order_by("planned_at")
        .first()
    )
    if reminder is None:
        report.say(
            f"1. Reminder: {REMINDER_PATIENT} has no reminder left to send "
            "(already confirmed by an earlier run); skipped."
        )
        return
    outcome = reminder_send_now(reminder_id=reminder.pk)
    reminder.refresh_from_db()
    if outcome != "sent":
        raise ScenarioError(f"The reminder was not sent: {outcome} {reminder.skip_reason}")
    delivery = _delivered(reminder.outbound_id, timeout=timeout)
    report.say(
        f"1. Reminder {reminder.pk} to {REMINDER_PATIENT} by {reminder.channel}: "
        f"{delivery.state} (local outbox)."
    )
    reply = simulator.sms(sender=phone, to=practice_account(Channel.SMS).address, body="C")
    interaction = _interaction(Channel.SMS, reply.provider_id)
    report.conversations["reminder_reply"] = interaction.conversation_id
    _wait(
        lambda: Appointment.objects.filter(
            pk=reminder.appointment_id, status=Appointment.Status.CONFIRMED
        ).exists(),
        timeout=timeout,
        what="the reply to confirm the appointment",
    )
    report.say(
        f"   {REMINDER_PATIENT} replied C (conversation {interaction.conversation_id}): "
        f"appointment {reminder.appointment_id} confirmed."
    )


def _step_billing(simulator, report, *, timeout):
    patient = _demo_patient(BILLING_PATIENT)
    mailbox = practice_account(Channel.EMAIL)
    sent = simulator.email(
        sender=_contact(patient, ContactPoint.Kind.EMAIL),
        sender_name=f"{patient.given_name} {patient.family_name}",
        to=mailbox.address,
        subject=BILLING_SUBJECT,
        body=BILLING_BODY,
    )
    interaction = _wait(
        lambda: (
            Interaction.objects.filter(email__message_id=sent.provider_id)
            .select_related("conversation__team")
            .first()
        ),
        timeout=timeout,
        what="the email to be stored",
    )
    report.conversations["billing"] = interaction.conversation_id
    report.say(
        f"2. Billing question from {BILLING_PATIENT} by email: conversation "
        f"{interaction.conversation_id} in {interaction.conversation.team.name}."
    )


def _step_distressed(simulator, report, *, timeout):
    patient = _demo_patient(DISTRESSED_PATIENT)
    sent = simulator.sms(
        sender=_contact(patient, ContactPoint.Kind.PHONE),
        to=practice_account(Channel.SMS).address,
        body=DISTRESSED_BODY,
    )
    conversation_id = _interaction(Channel.SMS, sent.provider_id).conversation_id
    report.conversations["distressed"] = conversation_id
    escalation = _wait(
        lambda: (
            Escalation.objects.filter(conversation_id=conversation_id, to_team__is_clinical=True)
            .select_related("to_team", "rule", "auto_reply__outbound")
            .order_by("created_at")
            .first()
        ),
        timeout=timeout,
        what="the emergency rule to escalate the conversation to the clinical team",
    )
    conversation = Conversation.objects.get(pk=conversation_id)
    why = escalation.rule.name if escalation.rule else escalation.kind
    report.say(
        f"3. Distressed SMS from {DISTRESSED_PATIENT}: conversation {conversation_id} "
        f"escalated to {escalation.to_team.name} ({why}), priority "
        f"{conversation.get_priority_display()}."
    )
    if escalation.auto_reply is not None:
        delivery = _delivered(escalation.auto_reply.outbound.pk, timeout=timeout)
        report.say(f"   The rule's automatic answer: {delivery.state} (local outbox).")


def _step_unknown_caller(simulator, report, *, timeout):
    line = practice_account(Channel.VOICE)
    call = simulator.call(
        caller=UNKNOWN_CALLER,
        to=line.address,
        outcome="voicemail",
        transcript=VOICEMAIL_TRANSCRIPT,
    )
    interaction = _interaction(Channel.VOICE, call.provider_id)
    report.conversations["unknown_caller"] = interaction.conversation_id
    _wait(
        lambda: Interaction.objects.filter(
            pk=interaction.pk, kind=Interaction.Kind.VOICEMAIL, processed_at__isnull=False
        ).exists(),
        timeout=timeout,
        what="the voicemail's transcript to be processed",
    )
    matched = "matched" if interaction.conversation.patient_id else "no patient matched"
    report.say(
        f"4. Voicemail from an unknown number ({mask_address(UNKNOWN_CALLER)}): conversation "
        f"{interaction.conversation_id} in {interaction.conversation.team.name}, {matched}."
    )


STEPS = (_step_reminder, _step_billing, _step_distressed, _step_unknown_caller)


def scenario_run(*, simulator, timeout=30, on_line=None):
    """Play the day; returns the ScenarioReport. `on_line` is called with each line
    as it is written, so a person sees progress."""
    report = ScenarioReport()
    if on_line is not None:
        say = report.say

        def report_and_print(text):
            say(text)
            on_line(text)

        report.say = report_and_print
    for step in STEPS:
        step(simulator, report, timeout=timeout)
    return report
