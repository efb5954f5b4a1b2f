"""Replies to reminders: C or 1 confirms, R or 2 asks to reschedule, anything else is
left to the inbox; each handled once, however often the inbound worker hands it over."""

import time
from datetime import timedelta

import pytest
from guardian.shortcuts import get_groups_with_perms

from channels_app.models import Conversation, Interaction
from channels_app.tasks import inbound_process
from contactcenter.access import grant_team_access
from patients.models import Appointment
from patients.services import appointment_create
from reminders.models import Reminder, ReminderReply
from reminders.services import reminder_reply_handle, reminders_dispatch_due
from tests.channels_app.conftest import sms_params
from tests.factories import TeamFactory, make_patient
from tests.reminders.conftest import LA_NAME, PATIENT_PHONE, next_monday_0900_la, reminders_of

DAY = 24 * 60
SMS_WEBHOOK = "/webhooks/twilio/sms/"


def _send_first_reminder(appointment):
    row = reminders_of(appointment)[3 * DAY]
    assert reminders_dispatch_due(now=row.planned_at).sent == 1
    return Reminder.objects.get(pk=row.pk)


def _reply(post_twilio, body, *, sid="SM" + "1" * 32, sender=PATIENT_PHONE):
    response = post_twilio(SMS_WEBHOOK, sms_params(body, sid=sid, sender=sender))
    assert response.status_code == 200
    return Interaction.objects.get(provider_id=sid)


def _reply_events(patient):
    return Interaction.objects.filter(
        patient=patient, kind=Interaction.Kind.EVENT, metadata__reminders__startswith="reply_"
    )


@pytest.mark.django_db(transaction=True)
def test_reply_c_through_the_webhook_confirms_the_appointment_on_a_real_worker(
    twilio_stub_settings, celery_worker_real, appointment, patient, post_twilio
):
    _send_first_reminder(appointment)

    inbound = _reply(post_twilio, "C")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        appointment.refresh_from_db()
        if appointment.status == Appointment.Status.CONFIRMED:
            break
        time.sleep(0.05)
    assert appointment.status == Appointment.Status.CONFIRMED
    reply = ReminderReply.objects.get()
    assert (reply.interaction_id, reply.action) == (inbound.pk, ReminderReply.Action.CONFIRM)
    [event] = _reply_events(patient)
    assert event.conversation_id == inbound.conversation_id
    assert event.body.startswith("Reply C: the appointment on Monday")
    assert event.body.endswith("is confirmed.")


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["C", "1", " c ", "c\n"])
def test_c_or_1_in_any_case_confirms(appointment, post_twilio, body):
    _send_first_reminder(appointment)

    inbound_process(str(_reply(post_twilio, body).pk))

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CONFIRMED


@pytest.mark.django_db
def test_confirming_stops_the_remaining_reminders(appointment, post_twilio):
    _send_first_reminder(appointment)
    inbound_process(str(_reply(post_twilio, "C").pk))

    rows = reminders_of(appointment)
    summary = reminders_dispatch_due(now=rows[DAY].planned_at)

    assert (summary.sent, summary.skipped) == (0, 1)
    assert reminders_of(appointment)[DAY].skip_reason == "confirmed"


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["R", "2", "r"])
def test_r_or_2_flags_the_conversation_as_a_reschedule_request(
    appointment, patient, post_twilio, body
):
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, body)

    inbound_process(str(inbound.pk))

    conversation = Conversation.objects.get(pk=inbound.conversation_id)
    assert conversation.labels == ["reschedule"]
    assert conversation.priority == Conversation.Priority.HIGH
    assert conversation.status == Conversation.Status.OPEN
    assert conversation.team_id == patient.team_id
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED
    [event] = _reply_events(patient)
    assert "asks to reschedule the appointment on Monday" in event.body
    assert event.metadata["reminders"] == "reply_reschedule"


@pytest.mark.django_db
def test_a_reschedule_request_is_routed_to_the_configured_scheduling_team(
    appointment, patient, post_twilio, settings
):
    scheduling = TeamFactory(name="Scheduling")
    settings.REMINDERS_SCHEDULING_TEAM = "Scheduling"
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "R")

    inbound_process(str(inbound.pk))

    conversation = Conversation.objects.get(pk=inbound.conversation_id)
    assert conversation.team_id == scheduling.pk
    assert conversation.assignee_id is None
    assert set(get_groups_with_perms(conversation)) == {scheduling.group}
    assert "flagged for Scheduling" in _reply_events(patient).get().body


@pytest.mark.django_db
def test_a_reschedule_request_to_an_unknown_scheduling_team_stays_with_its_team(
    appointment, patient, post_twilio, settings
):
    settings.REMINDERS_SCHEDULING_TEAM = "No such team"
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "R")

    inbound_process(str(inbound.pk))

    assert Conversation.objects.get(pk=inbound.conversation_id).team_id == patient.team_id


@pytest.mark.django_db
def test_the_same_reply_handled_twice_changes_nothing_the_second_time(
    appointment, patient, post_twilio
):
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "R")

    first = reminder_reply_handle(interaction=inbound)
    second = reminder_reply_handle(interaction=inbound)
    # The same message posted again by Twilio stores nothing new either.
    again = _reply(post_twilio, "R")

    assert first is not None and second is None
    assert again.pk == inbound.pk
    assert ReminderReply.objects.count() == 1
    assert _reply_events(patient).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["Can I come at 10?", "Yes", "C please", "RR", "3", ""])
def test_any_other_text_is_left_to_the_inbox(appointment, post_twilio, body):
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, body)

    assert reminder_reply_handle(interaction=inbound) is None

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED
    assert Conversation.objects.get(pk=inbound.conversation_id).labels == []


@pytest.mark.django_db
def test_a_reply_with_no_reminder_sent_is_left_alone(appointment, post_twilio):
    inbound = _reply(post_twilio, "C")

    assert reminder_reply_handle(interaction=inbound) is None
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.BOOKED


@pytest.mark.django_db
def test_a_reply_more_than_72_hours_after_the_reminder_is_left_alone(appointment, post_twilio):
    sent = _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "C")

    handled = reminder_reply_handle(
        interaction=inbound, now=sent.sent_at + timedelta(hours=72, minutes=1)
    )

    assert handled is None


@pytest.mark.django_db
def test_a_reply_after_the_appointment_started_is_left_alone(appointment, post_twilio):
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "C")

    handled = reminder_reply_handle(
        interaction=inbound, now=appointment.starts_at + timedelta(minutes=1)
    )

    assert handled is None


@pytest.mark.django_db
def test_a_reply_never_confirms_a_cancelled_appointment(appointment, post_twilio):
    _send_first_reminder(appointment)
    Appointment.objects.filter(pk=appointment.pk).update(status=Appointment.Status.CANCELLED)
    inbound = _reply(post_twilio, "C")

    assert reminder_reply_handle(interaction=inbound) is None
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED


@pytest.mark.django_db
def test_a_reply_on_a_shared_line_answers_the_one_patient_with_an_outstanding_reminder(
    appointment, patient, front_desk, post_twilio
):
    sibling = make_patient(team=front_desk, phones=[PATIENT_PHONE], time_zone=LA_NAME)
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "C")
    assert Conversation.objects.get(pk=inbound.conversation_id).patient_id is None

    inbound_process(str(inbound.pk))

    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CONFIRMED
    # The unmatched conversation stays unmatched (staff decide); the event goes on
    # the patient's own timeline.
    assert Conversation.objects.get(pk=inbound.conversation_id).patient_id is None
    assert _reply_events(patient).count() == 1
    assert not _reply_events(sibling).exists()


@pytest.mark.django_db
def test_a_reply_on_a_shared_line_with_two_patients_reminded_is_left_to_staff(
    appointment, patient, front_desk, post_twilio
):
    sibling = make_patient(team=front_desk, phones=[PATIENT_PHONE], time_zone=LA_NAME)
    sibling_appointment = appointment_create(patient=sibling, starts_at=next_monday_0900_la())
    due = reminders_of(appointment)[3 * DAY].planned_at
    assert reminders_dispatch_due(now=due).sent == 2
    inbound = _reply(post_twilio, "C")

    assert reminder_reply_handle(interaction=inbound) is None
    for booked in (appointment, sibling_appointment):
        booked.refresh_from_db()
        assert booked.status == Appointment.Status.BOOKED


@pytest.mark.django_db
def test_a_reschedule_request_on_a_conversation_of_another_team_moves_its_access(
    appointment, patient, front_desk, post_twilio, settings
):
    other = TeamFactory(name="Other desk")
    settings.REMINDERS_SCHEDULING_TEAM = "Other desk"
    _send_first_reminder(appointment)
    inbound = _reply(post_twilio, "R")
    grant_team_access(obj=inbound.conversation, team=front_desk, perm="view_conversation")

    inbound_process(str(inbound.pk))

    conversation = Conversation.objects.get(pk=inbound.conversation_id)
    assert set(get_groups_with_perms(conversation)) == {other.group}
