"""Outbound SMS through the real pipeline: a real Celery worker on Redis sends
through the official twilio client to a loopback stub of Twilio's Messages API."""

import time

import pytest

from channels_app.models import Conversation, OutboundMessage
from channels_app.services import conversation_open, outbound_create
from patients.models import Channel
from tests.channels_app.conftest import PRACTICE_NUMBER
from tests.factories import token_for


def _wait_for_state(outbound, states, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outbound.refresh_from_db()
        if outbound.state in states:
            return outbound
        time.sleep(0.05)
    raise AssertionError(f"delivery stayed {outbound.state!r}, expected one of {states}")


def _attempts_shown(client, user, conversation):
    """The delivery attempts of the conversation's one message, as the API shows them."""
    response = client.get(f"/api/v1/conversations/{conversation.pk}/messages/", **token_for(user))
    [message] = response.json()["results"]
    return [
        (attempt["number"], attempt["outcome"], attempt["provider_status"], attempt["error"])
        for attempt in message["delivery_attempts"]
    ]


@pytest.fixture
def conversation(sms_account, front_desk):
    return conversation_open(
        channel=Channel.SMS,
        team=front_desk,
        account=sms_account,
        contact_address="+14155550100",
    )


@pytest.fixture
def fast_retries(settings):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 0.2


def test_reply_is_sent_once_through_the_official_client(
    twilio_stub_settings, celery_worker_real, conversation, agent
):
    outbound = outbound_create(
        conversation=conversation, body="See you at 9", author=agent
    ).outbound

    outbound = _wait_for_state(outbound, {OutboundMessage.State.SENT})

    [request] = twilio_stub_settings.requests
    assert request.field("To") == "+14155550100"
    assert request.field("From") == PRACTICE_NUMBER
    assert request.field("Body") == "See you at 9"
    assert f"outbound={outbound.pk}" in request.field("StatusCallback")
    assert outbound.provider_id == twilio_stub_settings.created_messages[0]["sid"]
    assert outbound.interaction.provider_id == outbound.provider_id
    assert outbound.attempts == 1


def test_a_5xx_is_retried_once_and_one_message_is_sent(
    client, twilio_stub_settings, celery_worker_real, conversation, agent, fast_retries
):
    twilio_stub_settings.respond_next(status=500)

    outbound = outbound_create(conversation=conversation, body="Retry me", author=agent).outbound
    outbound = _wait_for_state(outbound, {OutboundMessage.State.SENT})

    assert len(twilio_stub_settings.requests) == 2
    assert len(twilio_stub_settings.created_messages) == 1
    assert outbound.attempts == 2
    first, second = _attempts_shown(client, agent, conversation)
    assert first[:3] == (1, "transient_error", "") and first[3].startswith("twilio 500")
    assert second == (2, "sent", outbound.provider_status, "")


def test_a_permanent_400_fails_without_retry(
    client, twilio_stub_settings, celery_worker_real, conversation, agent, fast_retries
):
    twilio_stub_settings.respond_next(
        status=400, code=21211, message="The 'To' number is not a valid phone number."
    )

    outbound = outbound_create(conversation=conversation, body="Nope", author=agent).outbound
    outbound = _wait_for_state(outbound, {OutboundMessage.State.FAILED})
    time.sleep(0.5)

    assert len(twilio_stub_settings.requests) == 1
    assert outbound.attempts == 1
    assert outbound.last_error == "twilio 400 code 21211"
    assert _attempts_shown(client, agent, conversation) == [
        (1, "permanent_error", "", "twilio 400 code 21211")
    ]
    assert Conversation.objects.get().pk == conversation.pk
