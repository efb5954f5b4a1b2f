"""Planning reminders when appointments change, the shipped policy and its templates,
the no-show risk, and the timeline events they leave."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from channels_app.models import Conversation, Interaction
from patients.models import Appointment, Channel, Patient
from patients.services import appointment_create, appointment_update
from reminders.models import AppointmentRisk, Reminder, ReminderPolicy, ReminderTemplate
from reminders.risk import RiskInputs, risk_score
from reminders.selectors import default_policy
from reminders.services import reminders_dispatch_due, reminders_plan
from tests.factories import make_patient
from tests.reminders.conftest import in_days_at_0900_la, la, next_monday_0900_la, reminders_of

pytestmark = pytest.mark.django_db

DAY = 24 * 60


def _events(patient, code=None):
    events = Interaction.objects.filter(patient=patient, kind=Interaction.Kind.EVENT)
    if code:
        events = events.filter(metadata__reminders=code)
    return list(events.order_by("created_at"))


# Planning.


def test_la_patient_with_a_monday_0900_appointment_gets_friday_sunday_and_monday_0800(
    appointment,
):
    rows = reminders_of(appointment)

    assert sorted(rows) == [120, DAY, 3 * DAY]
    assert {row.state for row in rows.values()} == {Reminder.State.SCHEDULED}
    monday = la(appointment.starts_at)
    friday, sunday = monday - timedelta(days=3), monday - timedelta(days=1)
    assert la(rows[3 * DAY].planned_at) == friday
    assert (la(rows[3 * DAY].planned_at).weekday(), la(rows[3 * DAY].planned_at).hour) == (4, 9)
    assert la(rows[DAY].planned_at) == sunday
    # Two hours before is 07:00, in quiet hours: it goes out when they end.
    assert la(rows[120].planned_at) == monday.replace(hour=8)


def test_planning_is_one_event_on_the_patients_timeline_in_a_resolved_conversation(
    appointment, patient, sms_account
):
    [event] = _events(patient, "planned")

    assert event.metadata["appointment_id"] == str(appointment.pk)
    assert sorted(event.metadata["reminder_ids"]) == sorted(
        row.pk for row in reminders_of(appointment).values()
    )
    assert "Reminders planned for the appointment on Monday" in event.body
    conversation = event.conversation
    assert (conversation.channel, conversation.account_id, conversation.patient_id) == (
        Channel.SMS,
        sms_account.pk,
        patient.pk,
    )
    # A reminder asks nothing of staff: it does not sit in the inbox.
    assert conversation.status == Conversation.Status.RESOLVED


def test_later_plans_reuse_the_patients_reminder_conversation(appointment, patient):
    appointment_create(patient=patient, starts_at=appointment.starts_at + timedelta(days=7))

    assert Conversation.objects.filter(patient=patient).count() == 1
    assert len(_events(patient, "planned")) == 2


def test_moving_the_appointment_replans_the_unsent_reminders_and_keeps_the_sent_one(
    appointment, patient
):
    first = reminders_of(appointment)[3 * DAY]
    reminders_dispatch_due(now=first.planned_at)
    sent = reminders_of(appointment)[3 * DAY]
    assert sent.state == Reminder.State.SENT

    moved = appointment_update(
        appointment=appointment, starts_at=appointment.starts_at + timedelta(days=1, hours=5)
    )

    rows = reminders_of(moved)
    assert (rows[3 * DAY].state, rows[3 * DAY].sent_at) == (Reminder.State.SENT, sent.sent_at)
    new_start = la(moved.starts_at)
    assert la(new_start).hour == 14
    assert la(rows[DAY].planned_at) == new_start - timedelta(days=1)
    assert la(rows[120].planned_at) == new_start - timedelta(hours=2)
    assert Reminder.objects.filter(appointment=appointment).count() == 3
    [event] = _events(patient, "replanned")
    assert sorted(event.metadata["reminder_ids"]) == sorted([rows[DAY].pk, rows[120].pk])


def test_cancelling_the_appointment_cancels_the_pending_reminders(appointment, patient):
    first = reminders_of(appointment)[3 * DAY]
    reminders_dispatch_due(now=first.planned_at)

    appointment_update(appointment=appointment, status=Appointment.Status.CANCELLED)

    rows = reminders_of(appointment)
    assert rows[3 * DAY].state == Reminder.State.SENT
    assert [(rows[m].state, rows[m].skip_reason) for m in (DAY, 120)] == [
        (Reminder.State.CANCELLED, "appointment_cancelled")
    ] * 2
    assert len(_events(patient, "cancelled")) == 1
    assert reminders_dispatch_due(now=appointment.starts_at - timedelta(hours=1)).sent == 0


def test_booking_again_after_a_cancellation_plans_the_cancelled_reminders_again(appointment):
    appointment_update(appointment=appointment, status=Appointment.Status.CANCELLED)

    appointment_update(appointment=appointment, status=Appointment.Status.BOOKED)

    assert {row.state for row in reminders_of(appointment).values()} == {Reminder.State.SCHEDULED}


def test_reminders_already_past_when_booked_are_recorded_as_skipped_too_late(
    policy, sms_account, patient
):
    starts_at = (timezone.now() + timedelta(hours=30)).replace(microsecond=0)

    appointment = appointment_create(patient=patient, starts_at=starts_at)

    row = reminders_of(appointment)[3 * DAY]
    assert (row.state, row.skip_reason) == (Reminder.State.SKIPPED, "too_late")
    assert "72 h before: skipped (too_late)" in _events(patient, "planned")[0].body


def test_a_reminder_in_quiet_hours_until_the_appointment_is_skipped(policy, sms_account, patient):
    starts_at = next_monday_0900_la().replace(hour=8, minute=0)

    appointment = appointment_create(patient=patient, starts_at=starts_at)

    row = reminders_of(appointment)[120]
    assert (row.state, row.skip_reason) == (
        Reminder.State.SKIPPED,
        "quiet_hours_until_appointment",
    )


def test_replanning_an_unchanged_appointment_changes_nothing(appointment, patient):
    before = {m: (r.state, r.planned_at) for m, r in reminders_of(appointment).items()}

    changed = reminders_plan(appointment=appointment)
    appointment_update(appointment=appointment, location="Room 9")

    assert changed == []
    assert {m: (r.state, r.planned_at) for m, r in reminders_of(appointment).items()} == before
    assert len(_events(patient)) == 1


def test_a_due_reminder_the_dispatcher_has_not_reached_stays_scheduled_when_replanned(
    appointment,
):
    row = reminders_of(appointment)[DAY]

    reminders_plan(appointment=appointment, now=row.planned_at + timedelta(hours=1))

    assert reminders_of(appointment)[DAY].state == Reminder.State.SCHEDULED


def test_a_reminder_skipped_at_dispatch_keeps_its_reason_until_the_appointment_moves(
    appointment, patient
):
    patient.contact_points.all().delete()
    row = reminders_of(appointment)[3 * DAY]
    reminders_dispatch_due(now=row.planned_at)

    appointment_update(appointment=appointment, location="Room 9")
    kept = reminders_of(appointment)[3 * DAY]
    appointment_update(appointment=appointment, starts_at=appointment.starts_at + timedelta(days=7))
    moved = reminders_of(appointment)[3 * DAY]

    assert (kept.state, kept.skip_reason) == (Reminder.State.SKIPPED, "no_contact_point")
    assert moved.state == Reminder.State.SCHEDULED


def test_an_appointment_created_with_an_iso_string_is_planned(policy, sms_account, patient):
    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la().isoformat())

    assert len(reminders_of(appointment)) == 3


def test_a_patient_with_an_unknown_time_zone_gets_skipped_reminders_not_an_error(
    policy, sms_account, patient
):
    Patient.objects.filter(pk=patient.pk).update(time_zone="Pacific Time")
    patient.refresh_from_db()

    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())

    assert {row.skip_reason for row in reminders_of(appointment).values()} == {"invalid_time_zone"}


def test_without_a_default_policy_nothing_is_planned(sms_account, patient):
    ReminderPolicy.objects.all().delete()

    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())

    assert not Reminder.objects.filter(appointment=appointment).exists()
    assert AppointmentRisk.objects.filter(appointment=appointment).exists()


# The shipped policy and templates.


def test_the_shipped_default_policy_is_72_24_and_2_hours_with_quiet_hours_20_to_8(policy):
    shipped = default_policy()

    assert shipped.offsets_minutes == [3 * DAY, DAY, 120]
    assert shipped.channel_order == ["preferred", "sms", "email"]
    assert (shipped.quiet_start.hour, shipped.quiet_end.hour) == (20, 8)
    assert shipped.stop_after_confirmation is True
    assert {(t.channel, t.language) for t in shipped.templates.all()} == {
        ("sms", "en"),
        ("sms", "es"),
        ("email", "en"),
        ("email", "es"),
    }


def test_the_shipped_templates_pass_their_own_validation(policy):
    for template in default_policy().templates.all():
        template.full_clean()


def _template(policy, body, *, channel=Channel.SMS, language="en"):
    return ReminderTemplate(policy=policy, channel=channel, language=language, body=body)


def test_a_template_with_an_unknown_placeholder_is_refused_on_save(policy):
    with pytest.raises(ValidationError, match=r"Unknown placeholder\(s\): \$doctor"):
        _template(policy, "Hi $first_name, see $doctor. Reply C or R.", language="fr").save()


def test_a_template_with_a_stray_dollar_sign_is_refused_on_save(policy):
    with pytest.raises(ValidationError, match="write \\$\\$ for a literal dollar sign"):
        _template(policy, "Bring $20. Reply C or R.", language="fr").save()


def test_an_sms_template_must_name_the_reply_options(policy):
    with pytest.raises(ValidationError, match="C to confirm and R to reschedule"):
        _template(policy, "Hi $first_name, see you $date.", language="fr").save()


def test_an_sms_template_must_not_offer_cancel_which_opts_out(policy):
    with pytest.raises(ValidationError, match="CANCEL is an opt-out keyword"):
        _template(
            policy, "Reply C to confirm, R to reschedule, CANCEL to cancel.", language="fr"
        ).save()


def test_an_sms_template_longer_than_two_segments_is_refused(policy):
    body = "Hi $first_name, reply C to confirm or R to reschedule. " + "Please arrive early. " * 15

    with pytest.raises(ValidationError, match="Too long: 3 SMS segments"):
        _template(policy, body, language="fr").save()


def test_a_spanish_sms_template_is_measured_on_a_saturday_when_it_turns_ucs2(policy):
    # One GSM-7 segment most days, but "sábado" makes it UCS-2: 67 per segment.
    body = "Hola $first_name: su cita es el $date a las $time en $location. Responda C o R. "
    body += "x" * 40

    with pytest.raises(ValidationError, match="Too long: 3 SMS segments"):
        _template(policy, body, language="es-mx").save()


def test_an_email_template_needs_no_reply_options_and_may_be_long(policy):
    template = _template(
        policy, "Dear $first_name,\n\n" + "Details. " * 100, channel=Channel.EMAIL, language="fr"
    )

    template.save()

    assert template.pk


def test_a_policy_with_repeated_offsets_is_refused(policy):
    with pytest.raises(ValidationError, match="distinct positive whole minutes"):
        ReminderPolicy(name="Bad", offsets_minutes=[60, 60]).save()


# No-show risk.


def test_risk_formula_adds_each_factor_transparently():
    score, factors = risk_score(
        RiskInputs(
            prior_noshows=1,
            prior_attended=3,
            lead_time=timedelta(days=20),
            unconfirmed_after_reminder=True,
            flags=("low_literacy", "vip"),
        )
    )

    assert score == pytest.approx(0.05 + 0.4 * 0.25 + 0.1 + 0.2 + 0.05)
    assert factors["prior_noshow_rate"] == {"points": 0.1, "noshows": 1, "attended": 3}
    assert factors["long_lead_time"]["points"] == 0.1
    assert factors["unconfirmed_after_reminder"]["points"] == 0.2
    assert factors["flags"] == {"points": 0.05, "flags": ["low_literacy"]}


def test_risk_of_a_new_patient_booked_soon_is_the_base():
    score, _ = risk_score(
        RiskInputs(
            prior_noshows=0,
            prior_attended=0,
            lead_time=timedelta(days=2),
            unconfirmed_after_reminder=False,
        )
    )

    assert score == 0.05


def test_risk_is_clamped_to_one():
    score, _ = risk_score(
        RiskInputs(
            prior_noshows=5,
            prior_attended=0,
            lead_time=timedelta(days=60),
            unconfirmed_after_reminder=True,
            flags=("low_literacy", "needs_interpreter"),
        )
    )

    assert score <= 1.0


def _past_appointment(patient, status, days_ago):
    return Appointment.objects.create(
        patient=patient, starts_at=timezone.now() - timedelta(days=days_ago), status=status
    )


def test_risk_is_stored_when_an_appointment_is_booked(appointment):
    risk = AppointmentRisk.objects.get(appointment=appointment)

    assert risk.score == pytest.approx(0.15)  # base + booked two weeks or more ahead
    assert risk.factors["long_lead_time"]["points"] == 0.1


def test_a_high_risk_appointment_gets_one_extra_reminder_at_the_policy_offset(
    policy, sms_account, front_desk
):
    patient = make_patient(team=front_desk, time_zone="America/Los_Angeles", low_literacy=True)
    _past_appointment(patient, Appointment.Status.NOSHOW, 40)
    _past_appointment(patient, Appointment.Status.NOSHOW, 20)

    appointment = appointment_create(patient=patient, starts_at=next_monday_0900_la())

    rows = reminders_of(appointment)
    extra = rows[policy.high_risk_extra_offset_minutes]
    assert extra.is_extra and extra.state == Reminder.State.SCHEDULED
    # 18 h before a Monday 09:00: Sunday 15:00, after the 24 h reminder.
    assert (la(extra.planned_at).weekday(), la(extra.planned_at).hour) == (6, 15)
    assert AppointmentRisk.objects.get(appointment=appointment).score == pytest.approx(0.6)


def test_an_unanswered_reminder_raises_the_risk_and_a_confirmation_lowers_it_again(
    policy, sms_account, front_desk
):
    patient = make_patient(team=front_desk, time_zone="America/Los_Angeles")
    _past_appointment(patient, Appointment.Status.NOSHOW, 30)
    appointment = appointment_create(patient=patient, starts_at=in_days_at_0900_la(10))
    assert AppointmentRisk.objects.get(appointment=appointment).score == pytest.approx(0.45)
    first = reminders_of(appointment)[3 * DAY]

    reminders_dispatch_due(now=first.planned_at)

    extra_offset = policy.high_risk_extra_offset_minutes
    assert AppointmentRisk.objects.get(appointment=appointment).score == pytest.approx(0.65)
    assert reminders_of(appointment)[extra_offset].state == Reminder.State.SCHEDULED
    assert _events(patient, "extra_planned")

    appointment_update(appointment=appointment, status=Appointment.Status.CONFIRMED)

    assert AppointmentRisk.objects.get(appointment=appointment).score == pytest.approx(0.45)
    extra = reminders_of(appointment)[extra_offset]
    assert (extra.state, extra.skip_reason) == (Reminder.State.CANCELLED, "risk_lowered")


# Admin.


def test_the_admin_shows_policies_reminders_and_risks(client, policy, appointment):
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "pw-0123456789")
    client.force_login(admin)

    pages = [
        "/admin/reminders/reminderpolicy/",
        f"/admin/reminders/reminderpolicy/{policy.pk}/change/",
        "/admin/reminders/reminder/",
        "/admin/reminders/appointmentrisk/",
    ]

    assert [client.get(page).status_code for page in pages] == [200, 200, 200, 200]
