from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from channels_app.models import Conversation, Interaction
from channels_app.services import outbound_create
from config.celery import app as celery_app
from contactcenter import roles
from escalation import services, tasks
from escalation.models import BusinessHours, Escalation, Notification, SlaPolicy
from tests.escalation.conftest import receive, reload
from tests.factories import make_staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("blank_configuration")]

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_17 = {str(day): [["09:00", "17:00"]] for day in range(5)}
# A Tuesday, in the past so that the real clock has passed every due time.
TUESDAY_16_50 = datetime(2025, 3, 4, 16, 50, tzinfo=NEW_YORK)


@pytest.fixture
def policy(db):
    return SlaPolicy.objects.create(
        priority=Conversation.Priority.NORMAL,
        first_response_minutes=30,
        next_response_minutes=60,
        resolution_minutes=24 * 60,
    )


@pytest.fixture
def office_hours(front_desk):
    return BusinessHours.objects.create(
        team=front_desk, time_zone="America/New_York", weekly=WEEKDAYS_9_TO_17
    )


@pytest.fixture
def breach_rule(db):
    return services.rule_create(
        name="Breach",
        conditions={"no_response_within_sla": True},
        actions={"set_priority": "high", "notify_supervisors": True},
    )


def test_message_at_16_50_with_30_minute_target_is_due_9_20_next_business_day(
    front_desk, policy, office_hours
):
    interaction = receive(front_desk, "Can I get a refill?", occurred_at=TUESDAY_16_50)

    services.interaction_process(interaction_id=interaction.pk)

    conversation = reload(interaction.conversation)
    expected = datetime(2025, 3, 5, 9, 20, tzinfo=NEW_YORK)
    assert conversation.first_response_due_at == expected
    assert conversation.sla_due_at == expected
    assert conversation.next_response_due_at is None


def test_friday_evening_message_is_due_monday_and_holidays_are_skipped(
    front_desk, policy, office_hours
):
    office_hours.holidays = ["2025-03-10"]
    office_hours.save()
    friday = datetime(2025, 3, 7, 16, 50, tzinfo=NEW_YORK)
    interaction = receive(front_desk, "Hello", occurred_at=friday)

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(interaction.conversation).sla_due_at == datetime(
        2025, 3, 11, 9, 20, tzinfo=NEW_YORK
    )


def test_team_without_business_hours_counts_around_the_clock(front_desk, policy):
    interaction = receive(front_desk, "Hello", occurred_at=TUESDAY_16_50)

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(interaction.conversation).sla_due_at == TUESDAY_16_50 + timedelta(minutes=30)


def test_a_second_message_before_any_answer_does_not_push_the_due_time_back(front_desk, policy):
    first = receive(front_desk, "Hello", occurred_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=first.pk)
    second = receive(
        front_desk,
        "Anyone?",
        conversation=first.conversation,
        occurred_at=TUESDAY_16_50 + timedelta(minutes=20),
    )

    services.interaction_process(interaction_id=second.pk)

    assert reload(first.conversation).sla_due_at == TUESDAY_16_50 + timedelta(minutes=30)


def test_staff_reply_clears_the_due_times_and_the_next_message_owes_a_next_response(
    front_desk, policy, django_capture_on_commit_callbacks
):
    agent = make_staff("desk-agent", role=roles.AGENT, teams=[front_desk])
    first = receive(front_desk, "Hello")
    services.interaction_process(interaction_id=first.pk)

    with django_capture_on_commit_callbacks(execute=True):
        outbound_create(conversation=reload(first.conversation), body="Hi!", author=agent)

    conversation = reload(first.conversation)
    assert (conversation.first_response_due_at, conversation.sla_due_at) == (None, None)

    second = receive(front_desk, "One more thing", conversation=conversation)
    services.interaction_process(interaction_id=second.pk)

    conversation = reload(conversation)
    assert conversation.first_response_due_at is None
    assert conversation.next_response_due_at == second.occurred_at + timedelta(minutes=60)
    assert conversation.sla_due_at == conversation.next_response_due_at


def test_an_automatic_reply_is_not_a_staff_response(
    front_desk, policy, django_capture_on_commit_callbacks
):
    interaction = receive(front_desk, "Hello")
    services.interaction_process(interaction_id=interaction.pk)

    with django_capture_on_commit_callbacks(execute=True):
        outbound_create(conversation=reload(interaction.conversation), body="We got it")

    assert reload(interaction.conversation).sla_due_at is not None


def test_a_reply_does_not_clear_what_a_newer_message_owes(front_desk, policy):
    interaction = receive(front_desk, "Hello")
    services.interaction_process(interaction_id=interaction.pk)

    services.conversation_response_recorded(
        conversation_id=interaction.conversation_id,
        replied_at=interaction.occurred_at - timedelta(seconds=1),
    )

    assert reload(interaction.conversation).sla_due_at is not None


def test_a_message_answered_before_it_was_processed_owes_nothing(front_desk, policy):
    interaction = receive(front_desk, "Hello")
    Conversation.objects.filter(pk=interaction.conversation_id).update(
        last_staff_response_at=interaction.occurred_at + timedelta(seconds=5)
    )

    services.interaction_process(interaction_id=interaction.pk)

    assert reload(interaction.conversation).sla_due_at is None


def test_breach_escalates_once_however_often_the_sweep_runs(
    front_desk, policy, office_hours, breach_rule, desk_supervisor
):
    interaction = receive(front_desk, "Can I get a refill?", occurred_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=interaction.pk)
    due = datetime(2025, 3, 5, 9, 20, tzinfo=NEW_YORK)

    assert services.sla_breaches_sweep(now=due - timedelta(seconds=1)) == 0
    tasks.sweep_sla_breaches()
    tasks.sweep_sla_breaches()

    [escalation] = Escalation.objects.all()
    assert escalation.kind == Escalation.Kind.SLA_BREACH
    assert escalation.breach_due_at == due
    assert escalation.rule == breach_rule
    assert f"first response was due {due.astimezone(ZoneInfo('UTC')).isoformat()}" in (
        escalation.reason
    )
    conversation = reload(interaction.conversation)
    assert conversation.escalated
    assert conversation.get_priority_display() == "high"
    assert list(Notification.objects.values_list("user", flat=True)) == [desk_supervisor.pk]


def test_a_new_breach_after_an_answer_escalates_again(
    front_desk, policy, breach_rule, django_capture_on_commit_callbacks
):
    agent = make_staff("desk-agent", role=roles.AGENT, teams=[front_desk])
    first = receive(front_desk, "Hello", occurred_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=first.pk)
    services.sla_breaches_sweep()
    with django_capture_on_commit_callbacks(execute=True):
        outbound_create(conversation=reload(first.conversation), body="Sorry!", author=agent)
    second = receive(front_desk, "Still waiting", conversation=reload(first.conversation))
    Conversation.objects.filter(pk=first.conversation_id).update(
        next_response_due_at=TUESDAY_16_50 + timedelta(days=1),
        sla_due_at=TUESDAY_16_50 + timedelta(days=1),
    )

    services.sla_breaches_sweep()
    services.sla_breaches_sweep()

    assert Escalation.objects.filter(kind="sla_breach").count() == 2
    assert second.conversation_id == first.conversation_id


def test_an_unresolved_conversation_past_its_resolution_target_escalates_once(
    front_desk, policy, office_hours, breach_rule, desk_supervisor
):
    interaction = receive(front_desk, "Can I get a refill?", occurred_at=TUESDAY_16_50)
    # Opened on that Tuesday: 24 business hours of 9 to 17 end on Friday at 16:50.
    Conversation.objects.filter(pk=interaction.conversation_id).update(created_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=interaction.pk)
    # Answered, so no response is owed: only the resolution target is overdue.
    Conversation.objects.filter(pk=interaction.conversation_id).update(
        first_response_due_at=None, sla_due_at=None, last_staff_response_at=TUESDAY_16_50
    )
    due = datetime(2025, 3, 7, 16, 50, tzinfo=NEW_YORK)

    assert reload(interaction.conversation).resolution_due_at == due
    assert services.sla_breaches_sweep(now=due - timedelta(seconds=1)) == 0
    assert services.sla_breaches_sweep() == 1
    assert services.sla_breaches_sweep() == 0

    [escalation] = Escalation.objects.all()
    assert escalation.breach_due_at == due
    assert escalation.matched["target"] == "resolution"
    assert escalation.reason.startswith("Not resolved within the SLA: resolution was due ")
    assert reload(interaction.conversation).escalated
    assert list(Notification.objects.values_list("user", flat=True)) == [desk_supervisor.pk]


def test_a_late_response_and_a_late_resolution_are_two_breaches(front_desk, policy, breach_rule):
    interaction = receive(front_desk, "Hello", occurred_at=TUESDAY_16_50)
    Conversation.objects.filter(pk=interaction.conversation_id).update(created_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=interaction.pk)

    services.sla_breaches_sweep()
    services.sla_breaches_sweep()

    conversation = reload(interaction.conversation)
    assert sorted(Escalation.objects.values_list("breach_due_at", flat=True)) == sorted(
        [conversation.first_response_due_at, conversation.resolution_due_at]
    )
    assert sorted(e.matched["target"] for e in Escalation.objects.all()) == [
        "first_response",
        "resolution",
    ]


def test_resolved_conversations_are_not_breaches(front_desk, policy, breach_rule):
    interaction = receive(front_desk, "Hello", occurred_at=TUESDAY_16_50)
    services.interaction_process(interaction_id=interaction.pk)
    Conversation.objects.filter(pk=interaction.conversation_id).update(status="resolved")

    assert services.sla_breaches_sweep() == 0


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone", "is not a known IANA time zone"),
        ({"weekly": {"0": [["17:00", "09:00"]]}}, "weekly", "must start before it ends"),
        ({"weekly": {"9": [["09:00", "17:00"]]}}, "weekly", "weekdays 0 (Monday) to 6"),
        ({"weekly": {}}, "weekly", "must open on at least one weekday"),
        ({"holidays": ["Christmas"]}, "weekly", "Business hours are malformed"),
    ],
)
def test_invalid_business_hours_are_refused(front_desk, fields, field, message):
    hours = BusinessHours(team=front_desk, **{"weekly": WEEKDAYS_9_TO_17, **fields})

    with pytest.raises(ValidationError) as refused:
        hours.full_clean()

    assert any(message in text for text in refused.value.message_dict[field])


def test_beat_runs_the_sweep_task_on_the_escalations_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["escalation-sla-breaches"]

    assert entry["task"] == tasks.sweep_sla_breaches.name
    assert entry["task"] in celery_app.tasks
    route = celery_app.amqp.router.route({}, entry["task"])
    assert route["queue"].name == "escalations"


def test_a_due_time_set_by_an_escalation_is_on_the_timeline_and_a_routine_one_is_not(
    front_desk, policy
):
    SlaPolicy.objects.create(
        priority=Conversation.Priority.URGENT,
        first_response_minutes=5,
        next_response_minutes=5,
        resolution_minutes=60,
    )
    services.rule_create(
        name="Bleeding", conditions={"phrases": ["bleeding"]}, actions={"set_priority": "urgent"}
    )
    routine = receive(front_desk, "Hello", address="+14155550101")
    urgent = receive(front_desk, "I am bleeding", address="+14155550102")

    for interaction in (routine, urgent):
        services.interaction_process(interaction_id=interaction.pk)

    def sla_events(conversation):
        return [
            event.body
            for event in Interaction.objects.filter(conversation=conversation, kind="event")
            if "response due" in event.body
        ]

    assert reload(urgent.conversation).sla_due_at == urgent.occurred_at + timedelta(minutes=5)
    assert sla_events(urgent.conversation) == [
        f"first response due {(urgent.occurred_at + timedelta(minutes=5)).isoformat()} "
        "(urgent: 5 business minutes)"
    ]
    assert reload(routine.conversation).sla_due_at is not None
    assert sla_events(routine.conversation) == []
