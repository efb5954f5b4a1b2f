import json

import pytest
import redis
from django.conf import settings
from twilio.request_validator import RequestValidator

from channels_app.models import ChannelAccount
from contactcenter import roles
from patients.models import Channel
from tests.factories import TeamFactory, make_staff

PRACTICE_NUMBER = "+15005550006"


@pytest.fixture
def front_desk(db):
    return TeamFactory(name="Front desk")


@pytest.fixture
def sms_account(front_desk):
    return ChannelAccount.objects.create(
        kind=Channel.SMS,
        name="Main line",
        address=PRACTICE_NUMBER,
        team=front_desk,
        help_text="Demo Practice: call 555-0100. Reply STOP to opt out.",
    )


@pytest.fixture
def agent(front_desk):
    return make_staff("desk-agent", role=roles.AGENT, teams=[front_desk])


def twilio_signed(path, params, *, token=None, base_url=None):
    """Headers Twilio would send: the signature over the public URL and params,
    computed with the twilio package's own validator."""
    url = (base_url or settings.PUBLIC_BASE_URL) + path
    validator = RequestValidator(token or settings.TWILIO_AUTH_TOKEN)
    return {"HTTP_X_TWILIO_SIGNATURE": validator.compute_signature(url, params)}


@pytest.fixture
def post_twilio(client):
    def post(path, params, **sign_kwargs):
        return client.post(path, params, **twilio_signed(path, params, **sign_kwargs))

    return post


def sms_params(body, *, sid="SM" + "0" * 32, sender="+14155550100", to=PRACTICE_NUMBER):
    return {
        "MessageSid": sid,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
    }


@pytest.fixture
def live_events():
    """The live events published on the real Redis of this test run."""
    client = redis.Redis.from_url(settings.LIVE_REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(settings.LIVE_CHANNEL)
    pubsub.get_message(timeout=1)  # the subscription confirmation

    def drain():
        messages = []
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            event = json.loads(message["data"])
            event.pop("at")  # the publishing time
            messages.append(event)
        return messages

    yield drain
    pubsub.close()
    client.close()
