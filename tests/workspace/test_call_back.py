"""The workspace's Call back button on a conversation whose caller asked for a
callback: the same service as the API, with the agent's phone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app import services
from channels_app.models import Callback, ChannelAccount
from patients.models import Channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting_callback(north):
    line = ChannelAccount.objects.create(
        kind=Channel.VOICE, name="Main line", address="+15005550006", team=north
    )
    conversation = services.conversation_open(
        channel=Channel.VOICE,
        team=north,
        account=line,
        contact_address="+14155550123",
        contact_index="index-of-the-caller",
    )
    now = timezone.now()
    return Callback.objects.create(
        conversation=conversation,
        account=line,
        team=north,
        phone="+14155550123",
        phone_index="index-of-the-caller",
        queued_at=now,
        requested_at=now,
        due_at=now + timedelta(minutes=30),
    )


def test_the_call_back_button_dials_through_the_callback_service(client, agent, waiting_callback):
    conversation_id = waiting_callback.conversation_id
    client.force_login(agent)

    page = client.get(f"/conversations/{conversation_id}/").text
    assert 'value="call_back"' in page and "Call back" in page
    refused = client.post(
        f"/conversations/{conversation_id}/act/",
        {"action": "call_back", "agent_number": "not a phone"},
        HTTP_HX_REQUEST="true",
    )
    response = client.post(
        f"/conversations/{conversation_id}/act/",
        {"action": "call_back", "agent_number": "+1 415 555 0199"},
        HTTP_HX_REQUEST="true",
    )

    assert refused.status_code == 400
    assert "Give the phone number you will answer on." in refused.text
    assert response.status_code == 200
    waiting_callback.refresh_from_db()
    assert waiting_callback.status == Callback.Status.DIALLING
    assert (waiting_callback.agent_id, waiting_callback.agent_number) == (agent.pk, "+14155550199")
    # Taken: the page no longer offers it, and a second press is refused with the reason.
    assert 'value="call_back"' not in response.text
    again = client.post(
        f"/conversations/{conversation_id}/act/",
        {"action": "call_back", "agent_number": "+14155550199"},
        HTTP_HX_REQUEST="true",
    )
    assert again.status_code == 409
    assert "No callback is waiting on this conversation." in again.text
