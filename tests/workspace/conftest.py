"""Fixtures of the workspace tests: a care team with an agent, a teammate and an
outsider, and SMS conversations with messages, made through the services."""

import pytest
from django.utils import timezone

from channels_app.models import ChannelAccount
from channels_app.services import inbound_record
from contactcenter import roles
from patients.models import Channel
from tests.factories import make_patient, make_staff


@pytest.fixture
def agent(north):
    return make_staff("agent.north", role=roles.AGENT, teams=[north], totp=True)


@pytest.fixture
def teammate(north):
    return make_staff("maria", role=roles.AGENT, teams=[north], totp=True)


@pytest.fixture
def sms_account(north):
    return ChannelAccount.objects.create(
        kind=Channel.SMS, name="North SMS", address="+14155559999", team=north
    )


def receive_sms(*, account, phone, body, provider_id=None):
    """An inbound SMS stored as the webhook stores it."""
    return inbound_record(
        channel=Channel.SMS,
        account=account,
        address=phone,
        body=body,
        provider_id=provider_id or "",
        occurred_at=timezone.now(),
        source="test",
        raw_payload={},
    ).interaction


@pytest.fixture
def make_sms_conversation(north, sms_account):
    """Patient n's conversation with one inbound SMS; returns the conversation."""

    def make(n, *, body="Can I get a refill?", team=None, account=None):
        phone = f"+1415555{n:04d}"
        make_patient(
            team=team or north, phones=(phone,), given_name=f"Pat{n}", family_name="Lovelace"
        )
        return receive_sms(account=account or sms_account, phone=phone, body=body).conversation

    return make


from tests.workspace.browser import open_browser  # noqa: E402, F401
from tests.workspace.compliance_fixtures import desk_data  # noqa: E402, F401


@pytest.fixture
def live_settings(settings, live_server, twilio_stub_settings):
    """For browser tests: providers call back to the live server, as they would the
    public URL, and sign-in asks for the second factor as in production."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.MFA_REQUIRED = True
    return twilio_stub_settings
