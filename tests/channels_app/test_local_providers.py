"""The local providers of `make run`: a real worker sends through them, the local
outbox keeps what would have been sent, and the delivery record reaches
"delivered" through the status service a provider's callback calls."""

import time

import pytest
from django.test import Client

from channels_app.models import ChannelAccount, LocalOutboxMessage, OutboundMessage
from channels_app.services import conversation_open, outbound_create
from compliance.models import AuditEvent
from contactcenter import roles
from patients.models import Channel
from tests.channels_app.conftest import PRACTICE_NUMBER
from tests.factories import make_staff


def _wait_for_state(outbound, states, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outbound.refresh_from_db()
        if outbound.state in states:
            return outbound
        time.sleep(0.05)
    raise AssertionError(f"delivery stayed {outbound.state!r}, expected one of {states}")


@pytest.fixture
def local_providers(settings):
    settings.SMS_PROVIDER = "local"
    settings.VOICE_PROVIDER = "local"
    settings.PORTAL_PROVIDER = "local"
    settings.EMAIL_BACKEND = "channels_app.local_outbox.EmailBackend"
    return settings


def _conversation(channel, account, address):
    return conversation_open(
        channel=channel, team=account.team, account=account, contact_address=address
    )


def test_an_sms_reply_is_kept_in_the_outbox_and_reported_delivered(
    local_providers, celery_worker_real, sms_account, agent
):
    conversation = _conversation(Channel.SMS, sms_account, "+14155550100")

    outbound = outbound_create(
        conversation=conversation, body="See you at 9", author=agent
    ).outbound
    outbound = _wait_for_state(outbound, {OutboundMessage.State.DELIVERED})

    [kept] = LocalOutboxMessage.objects.all()
    assert kept.channel == Channel.SMS
    assert (kept.from_address, kept.to_address, kept.body) == (
        PRACTICE_NUMBER,
        "+14155550100",
        "See you at 9",
    )
    assert kept.provider_id.startswith("SM") and kept.provider_id == outbound.provider_id
    assert kept.outbound_id == outbound.pk and kept.reported_at is not None
    assert outbound.provider_status == "delivered"
    assert outbound.interaction.provider_id == kept.provider_id


def test_an_email_reply_goes_through_the_outbox_backend_and_is_reported_delivered(
    local_providers, celery_worker_real, front_desk, agent
):
    mailbox = ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care", address="care@practice.test", team=front_desk
    )
    conversation = _conversation(Channel.EMAIL, mailbox, "ann@example.org")

    outbound = outbound_create(conversation=conversation, body="Your bill is fine.", author=agent)
    outbound = _wait_for_state(outbound.outbound, {OutboundMessage.State.DELIVERED})

    [kept] = LocalOutboxMessage.objects.all()
    assert (kept.channel, kept.to_address, kept.body) == (
        Channel.EMAIL,
        "ann@example.org",
        "Your bill is fine.",
    )
    assert "care@practice.test" in kept.from_address
    assert kept.provider_id == outbound.provider_id == outbound.interaction.email.message_id
    assert kept.outbound_id == outbound.pk


def test_a_reply_on_a_call_is_kept_as_the_call_that_would_read_it(
    local_providers, celery_worker_real, front_desk, agent
):
    line = ChannelAccount.objects.create(
        kind=Channel.VOICE, name="Main line", address=PRACTICE_NUMBER, team=front_desk
    )
    conversation = _conversation(Channel.VOICE, line, "+14155550100")

    outbound = outbound_create(conversation=conversation, body="Call us back", author=agent)
    outbound = _wait_for_state(outbound.outbound, {OutboundMessage.State.DELIVERED})

    [kept] = LocalOutboxMessage.objects.all()
    assert kept.channel == Channel.VOICE and kept.provider_id.startswith("CA")
    assert kept.body == "Call us back"


def test_a_portal_reply_is_kept_for_the_patient_and_reported_delivered(
    local_providers, celery_worker_real, front_desk, agent
):
    from tests.factories import make_patient

    portal = ChannelAccount.objects.create(
        kind=Channel.PORTAL, name="Portal", address="https://portal.test/hook", team=front_desk
    )
    patient = make_patient(team=front_desk)
    conversation = conversation_open(
        channel=Channel.PORTAL, team=front_desk, account=portal, patient=patient
    )

    outbound = outbound_create(conversation=conversation, body="Results are normal", author=agent)
    outbound = _wait_for_state(outbound.outbound, {OutboundMessage.State.DELIVERED})

    [kept] = LocalOutboxMessage.objects.all()
    assert (kept.channel, kept.body) == (Channel.PORTAL, "Results are normal")
    assert kept.provider_id == f"portal-{outbound.interaction_id}" == outbound.provider_id


def test_an_unusable_number_fails_for_good_as_twilio_would(
    local_providers, celery_worker_real, sms_account, agent
):
    conversation = _conversation(Channel.SMS, sms_account, "+1415555")

    outbound = outbound_create(conversation=conversation, body="Hello", author=agent).outbound
    outbound = _wait_for_state(outbound, {OutboundMessage.State.FAILED})

    assert outbound.last_error == "local provider: invalid destination (21211)"
    assert outbound.attempts == 1
    assert not LocalOutboxMessage.objects.exists()


def test_the_twilio_provider_stays_the_default(settings):
    from channels_app.adapters import adapter_for
    from channels_app.adapters.twilio_sms import TwilioSmsAdapter

    assert settings.SMS_PROVIDER == "twilio"
    assert isinstance(adapter_for(Channel.SMS), TwilioSmsAdapter)


@pytest.mark.django_db
def test_the_admin_outbox_shows_a_teams_messages_to_its_members_only(
    local_providers, sms_account, agent, south
):
    conversation = _conversation(Channel.SMS, sms_account, "+14155550100")
    outbound = outbound_create(conversation=conversation, body="Hello there", author=agent)
    from channels_app.adapters import adapter_for

    adapter_for(Channel.SMS).send(outbound.outbound)
    kept = LocalOutboxMessage.objects.get()
    outsider = make_staff("outsider", role=roles.AGENT, teams=[south])
    url = "/admin/channels_app/localoutboxmessage/"

    member_client, outsider_client = Client(), Client()
    member_client.force_login(agent)
    outsider_client.force_login(outsider)
    member_list = member_client.get(url)
    member_page = member_client.get(f"{url}{kept.pk}/change/")
    outsider_page = outsider_client.get(f"{url}{kept.pk}/change/")

    assert member_list.status_code == 200
    assert "+1 *** *** 0100" in member_list.text and "Hello there" not in member_list.text
    assert member_page.status_code == 200 and "Hello there" in member_page.text
    assert outsider_page.status_code == 302  # the admin's "no such object" redirect
    assert "Hello there" not in outsider_client.get(url).text
    assert AuditEvent.objects.filter(resource_type="local_outbox_message").exists()
