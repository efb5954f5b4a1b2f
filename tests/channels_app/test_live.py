"""channels_app.live: events are published after the change commits (never for a
rolled-back one), carry ids and no PHI, and reach subscribers of either broker."""

import json

import pytest
from django.db import transaction
from django.utils import timezone

from channels_app import live
from channels_app.services import conversation_open, inbound_record
from patients.models import Channel
from tests.factories import make_patient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def file_broker(settings, tmp_path):
    settings.LIVE_REDIS_URL = ""
    settings.LIVE_FILE = tmp_path / "events.jsonl"
    return settings.LIVE_FILE


def published(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _inbound(conversation, body):
    return inbound_record(
        channel=Channel.SMS,
        account=None,
        address="+14155550100",
        body=body,
        provider_id="",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
        conversation=conversation,
    )


def test_an_inbound_message_is_announced_after_commit_with_ids_only(file_broker, north):
    patient = make_patient(team=north, given_name="Grace", family_name="Hopper")
    conversation = conversation_open(
        channel=Channel.SMS, team=north, patient=patient, contact_address="+14155550100"
    )
    with transaction.atomic():
        interaction = _inbound(conversation, "My chest hurts").interaction
        assert published(file_broker) == []
    (event,) = published(file_broker)
    assert event["kind"] == "message"
    assert event["conversation"] == str(conversation.pk)
    assert event["team"] == north.pk
    assert event["interaction"] == str(interaction.pk)
    text = file_broker.read_text()
    assert "chest" not in text and "Grace" not in text and "+1415" not in text


def test_a_rolled_back_change_announces_nothing(file_broker, north):
    conversation = conversation_open(
        channel=Channel.SMS, team=north, contact_address="+14155550100"
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        _inbound(conversation, "never stored")
        raise RuntimeError
    assert published(file_broker) == []


def test_file_subscribers_get_what_is_published_after_they_started(file_broker):
    live.publish_now({"kind": "message", "conversation": "before", "team": 1, "at": 0})
    frames = live.broker().subscribe_sync(stop=lambda: False)
    assert next(frames) is None
    live.publish_now({"kind": "delivery", "conversation": "after", "team": 1, "at": 0})
    received = next(payload for payload in frames if payload)
    assert json.loads(received)["conversation"] == "after"
    frames.close()


def test_redis_subscribers_get_events_on_this_runs_channel(settings):
    import redis

    frames = live.broker().subscribe_sync(stop=lambda: False)
    assert next(frames) is None
    live.publish_now({"kind": "conversation", "conversation": "c1", "team": 7, "at": 0})
    received = next(payload for payload in frames if payload)
    assert json.loads(received) == {
        "kind": "conversation",
        "conversation": "c1",
        "team": 7,
        "at": 0,
    }
    frames.close()
    assert settings.LIVE_CHANNEL.endswith("live") and settings.LIVE_CHANNEL != "cc:live"
    assert redis.Redis.from_url(settings.LIVE_REDIS_URL).ping()
