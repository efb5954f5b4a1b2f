"""The local outbox page: what the local providers kept, for the agent's teams'
conversations only, newest first in keyset pages, audited naming every patient,
linked from the top bar when a local provider is on."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.models import LocalOutboxMessage
from channels_app.services import local_outbox_record, outbound_create
from compliance.models import AuditEvent

pytestmark = pytest.mark.django_db


def kept(conversation, body):
    interaction = outbound_create(conversation=conversation, body=body, author=None)
    return local_outbox_record(
        channel="sms",
        provider_id=f"SMlocal{interaction.pk.hex}",
        to_address=conversation.contact_address,
        body=body,
        outbound=interaction.outbound,
    )


def test_the_outbox_lists_the_teams_kept_messages_audited(
    client, agent, settings, make_sms_conversation, south
):
    settings.SMS_PROVIDER = "local"
    mine = make_sms_conversation(40)
    theirs = make_sms_conversation(41, team=south)
    kept(mine, "Your refill is ready at the pharmacy.")
    kept(theirs, "Another team's reply")
    client.force_login(agent)
    inbox = client.get("/inbox/").text
    assert 'href="/outbox/">Local outbox</a>' in inbox
    page = client.get("/outbox/")
    assert page.status_code == 200
    assert "Your refill is ready at the pharmacy." in page.text
    assert "Another team" not in page.text
    assert f'href="/conversations/{mine.pk}/"' in page.text
    event = AuditEvent.objects.filter(details__path="/outbox/", actor_user_id=agent.pk).get()
    assert event.patient_ids == [str(mine.patient_id)]
    assert event.resource_type == "local_outbox_message"


def test_no_link_without_local_providers(client, agent, settings):
    settings.SMS_PROVIDER = settings.VOICE_PROVIDER = "twilio"
    settings.PORTAL_PROVIDER = "webhook"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    client.force_login(agent)
    assert "Local outbox" not in client.get("/inbox/").text


def test_the_outbox_pages_by_keyset_at_constant_queries(
    client, agent, settings, make_sms_conversation, monkeypatch
):
    from workspace import outbox

    monkeypatch.setattr(outbox, "PAGE_SIZE", 3)
    conversations = [make_sms_conversation(50 + n) for n in range(7)]
    for n, conversation in enumerate(conversations):
        kept(conversation, f"kept message {n}")
    client.force_login(agent)
    client.get("/outbox/")
    with CaptureQueriesContext(connection) as first_page:
        first = client.get("/outbox/").text
    assert [f"kept message {n}" in first for n in (6, 5, 4, 3)] == [True, True, True, False]
    cursor = first.split("/outbox/?cursor=")[1].split('"')[0]
    with CaptureQueriesContext(connection) as second_page:
        second = client.get(f"/outbox/?cursor={cursor}").text
    assert "kept message 3" in second and "kept message 4" not in second
    assert len(first_page) == len(second_page)
    assert LocalOutboxMessage.objects.count() == 7
