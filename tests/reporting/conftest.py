"""Builders for KPI and survey tests: conversations, messages, events and calls at
controlled times, written as the channels services leave them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from channels_app.models import CallDetail, ChannelAccount, Conversation, Interaction
from channels_app.services import conversation_change, conversation_open, normalise_address
from contactcenter import roles
from patients.models import Channel
from reporting.models import SurveyRequest
from tests.factories import make_patient, make_staff

PRACTICE_NUMBER = "+15005550006"


def at(day, hour=9, minute=0, second=0, month=3):
    """A moment of 2025 (March by default), in UTC: the test settings' zone."""
    return datetime(2025, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def sms_line(north):
    return ChannelAccount.objects.create(
        kind=Channel.SMS, name="North line", address=PRACTICE_NUMBER, team=north
    )


@pytest.fixture
def voice_line(north):
    return ChannelAccount.objects.create(
        kind=Channel.VOICE, name="North phone", address=PRACTICE_NUMBER, team=north
    )


@pytest.fixture
def north_agent(north):
    return make_staff("north-agent", role=roles.AGENT, teams=[north])


@pytest.fixture
def north_supervisor(north):
    return make_staff("north-supervisor", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def admin(db):
    return make_staff("the-admin", role=roles.ADMIN)


def patient_with_phone(team, phone):
    return make_patient(team=team, phones=(phone,))


def conversation(
    team,
    *,
    opened,
    channel=Channel.SMS,
    patient=None,
    account=None,
    address="+14155550100",
    resolved=None,
    **fields,
):
    """A conversation created at `opened`; resolved at `resolved` when given."""
    _normalised, index = normalise_address(channel, address)
    created = conversation_open(
        channel=channel,
        team=team,
        account=account,
        patient=patient,
        contact_address=address,
        contact_index=index,
        occurred_at=opened,
    )
    if resolved is not None:
        fields.update(status=Conversation.Status.RESOLVED, resolved_at=resolved)
    Conversation.objects.filter(pk=created.pk).update(created_at=opened, **fields)
    created.refresh_from_db()
    return created


def message(conv, *, when, direction=Interaction.Direction.INBOUND, author=None, **fields):
    return Interaction.objects.create(
        conversation=conv,
        patient=conv.patient,
        channel=conv.channel,
        kind=fields.pop("kind", Interaction.Kind.MESSAGE),
        direction=direction,
        author=author,
        occurred_at=when,
        **fields,
    )


def event(conv, *, when, change):
    return message(
        conv,
        when=when,
        direction=Interaction.Direction.INTERNAL,
        kind=Interaction.Kind.EVENT,
        metadata={"change": change},
    )


def call(team, *, when, result, wait, account=None, address="+14155550199"):
    """An inbound call that left the queue as `result` after `wait` seconds (None:
    it never queued)."""
    conv = conversation(team, opened=when, channel=Channel.VOICE, account=account, address=address)
    interaction = message(conv, when=when, kind=Interaction.Kind.CALL)
    CallDetail.objects.create(
        interaction=interaction, status="completed", queue_result=result, queue_wait_seconds=wait
    )
    return interaction


def resolve(conv, actor, django_capture_on_commit_callbacks):
    """Staff resolve the conversation; conversation_resolved schedules its survey."""
    with django_capture_on_commit_callbacks(execute=True):
        conversation_change(
            conversation=conv,
            actor=actor,
            actor_is_supervisor=False,
            changes={"status": Conversation.Status.RESOLVED},
        )


def make_due():
    SurveyRequest.objects.filter(state=SurveyRequest.State.SCHEDULED).update(
        scheduled_for=timezone.now() - timedelta(seconds=1)
    )
