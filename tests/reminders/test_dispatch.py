"""Dispatching due reminders: through the real outbound pipeline to a loopback Twilio
stub, the reasons a reminder is skipped, and exactly-once sending under concurrency."""

import threading
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from channels_app.models import (
    Conversation,
    ConversationGroupObjectPermission,
    Interaction,
    OutboundMessage,
)
from contactcenter.blind_index import email_index, mrn_index, phone_index
from patients.models import Appointment, Channel, ContactPoint, Patient
from patients.services import appointment_create
from reminders.models import Reminder, ReminderPolicy, ReminderTemplate
from reminders.services import reminders_dispatch_due
from reminders.tasks import dispatch_due_reminders
from tests.channels_app.conftest import PRACTICE_NUMBER, sms_params
from tests.factories import make_patient
from tests.reminders.conftest import (
    LA_NAME,
    PATIENT_PHONE,
    la,
    next_monday_0900_la,
    reminders_of,
)

DAY = 24 * 60


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _outbound_states():
    return list(OutboundMessage.objects.values_list("state", flat=True))


def _skip_event(patient, reminder):
    return Interaction.objects.filter(
        patient=patient, kind=Interaction.Kind.EVENT, metadata__reminder_id=reminder.pk
    ).first()


# Through the real pipeline, with a real worker.


@pytest.mark.django_db(transaction=True)
def test_reminders_go_out_at_their_local_times_through_a_real_worker_to_the_stub(
    twilio_stub_settings, celery_worker_real, appointment, patient
):
    rows = reminders_of(appointment)

    for minutes in (3 * DAY, DAY, 120):
        summary = reminders_dispatch_due(now=rows[minutes].planned_at)
        assert summary.sent == 1
        _wait_for(lambda: set(_outbound_states()) == {OutboundMessage.State.SENT})

    requests = twilio_stub_settings.requests
    assert len(requests) == 3
    assert {(r.field("From"), r.field("To")) for r in requests} == {
        (PRACTICE_NUMBER, PATIENT_PHONE)
    }
    local = la(appointment.starts_at)
    assert requests[0].field("Body") == (
        f"Hi Ada, this is a reminder of your appointment on Monday, {local:%B} {local.day} "
        "at 9:00 AM at Main campus, room 2. Reply C to confirm or R to reschedule."
    )
    sent = reminders_of(appointment)
    assert [la(sent[m].sent_at) for m in (3 * DAY, DAY, 120)] == [
        local - timedelta(days=3),
        local - timedelta(days=1),
        local.replace(hour=8),
    ]
    for minutes in (3 * DAY, DAY, 120):
        row = sent[minutes]
        assert (row.state, row.channel) == (Reminder.State.SENT, Channel.SMS)
        assert row.outbound.state == OutboundMessage.State.SENT
        assert row.outbound.interaction.metadata["reminder_id"] == row.pk
        assert row.outbound.interaction.patient_id == patient.pk


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_dispatches_on_the_reminders_queue_through_a_real_worker(
    twilio_stub_settings, celery_worker_real, policy, sms_account, front_desk
):
    # A zone where it is daytime now, so the reminder due now is outside quiet hours.
    zone = next(
        name
        for name in ("UTC", "Asia/Tokyo", "America/New_York", "Pacific/Honolulu")
        if 9 <= timezone.now().astimezone(ZoneInfo(name)).hour < 19
    )
    patient = make_patient(team=front_desk, phones=[PATIENT_PHONE], time_zone=zone)
    appointment = appointment_create(patient=patient, starts_at=timezone.now() + timedelta(days=5))
    row = reminders_of(appointment)[3 * DAY]
    Reminder.objects.filter(pk=row.pk).update(planned_at=timezone.now() - timedelta(minutes=1))

    dispatch_due_reminders.delay()

    _wait_for(lambda: _outbound_states() == [OutboundMessage.State.SENT])
    assert reminders_of(appointment)[3 * DAY].state == Reminder.State.SENT
    assert len(twilio_stub_settings.created_messages) == 1


# Skips, each with its reason and a timeline event.


@pytest.mark.django_db
def test_stop_through_the_signed_webhook_skips_later_reminders_as_opted_out(
    appointment, patient, post_twilio
):
    rows = reminders_of(appointment)
    assert reminders_dispatch_due(now=rows[3 * DAY].planned_at).sent == 1

    response = post_twilio("/webhooks/twilio/sms/", sms_params("STOP", sender=PATIENT_PHONE))
    summary = reminders_dispatch_due(now=rows[DAY].planned_at)

    assert response.status_code == 200
    assert (summary.sent, summary.skipped) == (0, 1)
    skipped = reminders_of(appointment)[DAY]
    assert (skipped.state, skipped.skip_reason) == (Reminder.State.SKIPPED, "opted_out")
    assert skipped.outbound is None
    assert OutboundMessage.objects.count() == 1
    event = _skip_event(patient, skipped)
    assert event.metadata["skip_reason"] == "opted_out"
    assert "skipped: opted_out" in event.body


@pytest.mark.django_db
def test_a_cancelled_appointment_left_with_scheduled_reminders_is_skipped_as_not_booked(
    appointment,
):
    # Written around the service, as a bulk import would: no replanning happened.
    Appointment.objects.filter(pk=appointment.pk).update(status=Appointment.Status.CANCELLED)
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    assert reminders_of(appointment)[3 * DAY].skip_reason == "appointment_not_booked"


@pytest.mark.django_db
def test_a_confirmed_appointment_gets_no_more_reminders_when_the_policy_says_so(appointment):
    Appointment.objects.filter(pk=appointment.pk).update(status=Appointment.Status.CONFIRMED)
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    assert reminders_of(appointment)[3 * DAY].skip_reason == "confirmed"


@pytest.mark.django_db
def test_a_confirmed_appointment_is_still_reminded_when_the_policy_does_not_stop(
    appointment, policy
):
    ReminderPolicy.objects.filter(pk=policy.pk).update(stop_after_confirmation=False)
    Appointment.objects.filter(pk=appointment.pk).update(status=Appointment.Status.CONFIRMED)
    row = reminders_of(appointment)[3 * DAY]

    assert reminders_dispatch_due(now=row.planned_at).sent == 1


@pytest.mark.django_db
def test_a_patient_without_a_phone_or_email_is_skipped_as_no_contact_point(
    policy, sms_account, front_desk
):
    patient = make_patient(team=front_desk, phones=[], time_zone=LA_NAME)
    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    assert reminders_of(appointment)[3 * DAY].skip_reason == "no_contact_point"
    assert _skip_event(patient, row) is not None


@pytest.mark.django_db
def test_without_a_practice_sms_number_an_sms_reminder_is_skipped(policy, front_desk):
    patient = make_patient(team=front_desk, time_zone=LA_NAME)
    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    assert reminders_of(appointment)[3 * DAY].skip_reason == "no_sms_account"


@pytest.mark.django_db
def test_an_sms_patient_without_a_phone_falls_back_to_email(policy, sms_account, front_desk):
    patient = make_patient(
        team=front_desk, phones=[], emails=["ada@example.org"], time_zone=LA_NAME
    )
    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    sent = reminders_of(appointment)[3 * DAY]
    assert (sent.state, sent.channel) == (Reminder.State.SENT, Channel.EMAIL)
    assert sent.outbound.to_address == "ada@example.org"
    assert "call us at " + PRACTICE_NUMBER in sent.outbound.interaction.body
    assert sent.outbound.interaction.conversation.subject == "Appointment reminder"


@pytest.mark.django_db
def test_an_opted_out_patient_with_an_email_gets_the_reminder_by_email(appointment, patient):
    ContactPoint.objects.filter(patient=patient).update(sms_opted_out=True)
    ContactPoint.objects.create(
        patient=patient,
        kind=ContactPoint.Kind.EMAIL,
        value="ada@example.org",
        value_index=email_index("ada@example.org"),
    )
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    assert reminders_of(appointment)[3 * DAY].channel == Channel.EMAIL


@pytest.mark.django_db
def test_a_spanish_speaking_patient_gets_the_spanish_text_and_date(policy, sms_account, front_desk):
    patient = make_patient(
        team=front_desk, given_name="María", time_zone=LA_NAME, preferred_language="es-MX"
    )
    appointment = appointment_create(
        patient=patient, starts_at=next_monday_0900_la(), location="Clínica Norte"
    )
    row = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=row.planned_at)

    body = reminders_of(appointment)[3 * DAY].outbound.interaction.body
    local = la(appointment.starts_at)
    assert body.startswith(f"Hola María: cita el lunes {local.day} de ")
    assert "a las 9:00 en Clínica Norte. Responda C para confirmar o R para cambiarla." in body


@pytest.mark.django_db
def test_a_late_dispatcher_in_quiet_hours_holds_the_reminder_until_morning(appointment):
    friday_evening = la(reminders_of(appointment)[3 * DAY].planned_at).replace(hour=20, minute=5)

    summary = reminders_dispatch_due(now=friday_evening)

    held = reminders_of(appointment)[3 * DAY]
    assert (summary.postponed, held.state) == (1, Reminder.State.SCHEDULED)
    assert la(held.planned_at) == (friday_evening + timedelta(days=1)).replace(hour=8, minute=0)


@pytest.mark.django_db
def test_a_reminder_held_by_quiet_hours_gives_way_to_a_closer_one_due_by_morning(appointment):
    sunday_evening = la(reminders_of(appointment)[DAY].planned_at).replace(hour=20, minute=5)

    reminders_dispatch_due(now=sunday_evening)

    # Monday 08:00 is when the 2 h reminder goes out: one message, not two.
    assert reminders_of(appointment)[DAY].skip_reason == "superseded"
    assert reminders_of(appointment)[120].state == Reminder.State.SCHEDULED


@pytest.mark.django_db
def test_after_an_outage_only_the_closest_due_reminder_goes_out(appointment):
    rows = reminders_of(appointment)

    summary = reminders_dispatch_due(now=rows[DAY].planned_at + timedelta(minutes=30))

    after = reminders_of(appointment)
    assert (summary.sent, summary.skipped) == (1, 1)
    assert after[3 * DAY].skip_reason == "superseded"
    assert after[DAY].state == Reminder.State.SENT


@pytest.mark.django_db
def test_a_reminder_that_cannot_render_fails_visibly_without_holding_up_the_batch(
    policy, appointment, front_desk
):
    other = make_patient(
        team=front_desk, phones=["+14155550111"], time_zone=LA_NAME, preferred_language="fr"
    )
    other_appointment = appointment_create(patient=other, starts_at=appointment.starts_at)
    # An admin's broken French template, written around validation.
    ReminderTemplate.objects.bulk_create(
        [ReminderTemplate(policy=policy, channel="sms", language="fr", body="Bonjour $prenom")]
    )

    summary = reminders_dispatch_due(now=reminders_of(appointment)[3 * DAY].planned_at)

    assert (summary.sent, summary.failed) == (1, 1)
    failed = reminders_of(other_appointment)[3 * DAY]
    assert (failed.state, failed.skip_reason) == (Reminder.State.FAILED, "error ValueError")
    assert reminders_of(appointment)[3 * DAY].state == Reminder.State.SENT


@pytest.mark.django_db
def test_nothing_due_yet_is_left_alone(appointment):
    row = reminders_of(appointment)[3 * DAY]

    summary = reminders_dispatch_due(now=row.planned_at - timedelta(minutes=1))

    assert summary.sent == summary.skipped == 0
    assert reminders_of(appointment)[3 * DAY].state == Reminder.State.SCHEDULED


# Exactly once under concurrency.

# Enough reminders for twenty batches, so both dispatchers claim some while the
# other is mid-batch; small batches keep the count (and the test) small: the claim
# is per batch, so twenty of five interleave as twenty of twenty do.
# bench/reminder_dispatch.py dispatches 10,000.
REMINDER_COUNT = 100
DISPATCH_BATCH = 5


def _bulk_due_reminders(*, policy, team, account, count, planned_at):
    """count patients, each with a phone, one appointment with one due reminder and
    the resolved reminder conversation that planning opens, written in bulk: the
    dispatch path is what is under test, not planning."""
    starts_at = planned_at + timedelta(days=1)
    patients, points, appointments, reminders, conversations = [], [], [], [], []
    for n in range(count):
        patient = Patient(
            mrn=f"BULK-{n}",
            mrn_index=mrn_index(f"BULK-{n}"),
            given_name="Ada",
            family_name="Lovelace",
            time_zone=LA_NAME,
            team=team,
        )
        phone = f"+1415{2000000 + n:07d}"
        appointment = Appointment(id=uuid.uuid4(), patient=patient, starts_at=starts_at)
        patients.append(patient)
        points.append(
            ContactPoint(patient=patient, kind="phone", value=phone, value_index=phone_index(phone))
        )
        appointments.append(appointment)
        conversations.append(
            Conversation(
                channel=Channel.SMS,
                account=account,
                contact_address=phone,
                contact_index=phone_index(phone),
                patient=patient,
                team=team,
                status=Conversation.Status.RESOLVED,
                last_interaction_at=planned_at - timedelta(days=2),
            )
        )
        reminders.append(
            Reminder(
                appointment=appointment, policy=policy, offset_minutes=DAY, planned_at=planned_at
            )
        )
    Patient.objects.bulk_create(patients, batch_size=1000)
    ContactPoint.objects.bulk_create(points, batch_size=1000)
    Appointment.objects.bulk_create(appointments, batch_size=1000)
    Reminder.objects.bulk_create(reminders, batch_size=1000)
    Conversation.objects.bulk_create(conversations, batch_size=1000)
    view = Permission.objects.get(
        content_type__app_label="channels_app", codename="view_conversation"
    )
    ConversationGroupObjectPermission.objects.bulk_create(
        [
            ConversationGroupObjectPermission(
                permission=view, group=team.group, content_object=conversation
            )
            for conversation in conversations
        ],
        batch_size=1000,
    )


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_send_each_reminder_exactly_once(
    policy, sms_account, front_desk, purge_our_queues
):
    # Tuesday 17:00 UTC is 09:00 or 10:00 in Los Angeles: outside quiet hours.
    now = datetime(2031, 6, 3, 17, 0, tzinfo=ZoneInfo("UTC"))
    _bulk_due_reminders(
        policy=policy, team=front_desk, account=sms_account, count=REMINDER_COUNT, planned_at=now
    )
    summaries, errors = [], []
    start = threading.Barrier(2)

    def dispatcher():
        try:
            start.wait()
            summaries.append(reminders_dispatch_due(now=now, batch_size=DISPATCH_BATCH))
        except Exception as error:  # reported below, on the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    assert errors == []
    assert sorted(summary.sent > 0 for summary in summaries) == [True, True]
    assert sum(summary.sent for summary in summaries) == REMINDER_COUNT
    per_reminder = (
        Interaction.objects.filter(direction=Interaction.Direction.OUTBOUND)
        .values("metadata__reminder_id")
        .annotate(messages=Count("pk"), deliveries=Count("outbound"))
    )
    counts = {
        row["metadata__reminder_id"]: (row["messages"], row["deliveries"]) for row in per_reminder
    }
    assert len(counts) == REMINDER_COUNT
    assert set(counts.values()) == {(1, 1)}
    assert set(counts) == set(Reminder.objects.values_list("pk", flat=True))
    assert not Reminder.objects.exclude(state=Reminder.State.SENT).exists()
    assert OutboundMessage.objects.count() == REMINDER_COUNT
    assert Reminder.objects.values("outbound").distinct().count() == REMINDER_COUNT
    # Each went into the patient's existing reminder conversation.
    assert Conversation.objects.count() == REMINDER_COUNT
