"""A Redis outage during webhook traffic. Redis is only the broker and the cache:
with it stopped, a validly signed email, SMS and portal message are each stored and
answered 2xx, a replayed email signature is still refused (the database decides),
and once Redis is back the sweeper queues them and a real worker processes them.

Redis here is the test's own redis-server (tests/channels_app/isolated.py), used
as the broker and as the cache, so anything on the request path that still needed
the cache would fail this test."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from channels_app.models import ChannelAccount, Interaction, RawEvent, WebhookSignatureUse
from channels_app.tasks import sweep_channels
from patients.models import Channel
from tests.channels_app import isolated
from tests.channels_app.conftest import sms_params
from tests.channels_app.isolated import wait_for
from tests.channels_app.test_webhooks_email import (
    PRACTICE_ADDRESS,
    email_signature,
    patient_email,
    post_raw_email,
)
from tests.factories import bearer, make_api_key, make_patient

private_redis = isolated.private_redis
private_broker = isolated.private_broker
start_worker = isolated.start_worker

pytestmark = pytest.mark.django_db(transaction=True)

SMS = "/webhooks/twilio/sms/"
PORTAL = "/api/v1/portal/messages/"


@pytest.fixture
def cache_on_private_redis(private_broker, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": private_broker.url,
            "KEY_PREFIX": settings.TEST_RUN_PREFIX,
        }
    }
    return private_broker


@pytest.fixture
def email_account(front_desk):
    return ChannelAccount.objects.create(
        kind=Channel.EMAIL, name="Care inbox", address=PRACTICE_ADDRESS, team=front_desk
    )


def _post_portal(key, patient, message_id):
    return Client().post(
        PORTAL,
        json.dumps(
            {"patient": str(patient.pk), "body": "Refill, please.", "message_id": message_id}
        ),
        content_type="application/json",
        **bearer(key),
    )


def test_webhooks_are_stored_while_redis_is_down_and_processed_once_it_returns(
    cache_on_private_redis,
    start_worker,
    post_twilio,
    sms_account,
    email_account,
    front_desk,
    settings,
):
    redis = cache_on_private_redis
    portal_key, _ = make_api_key(scopes=["portal:write"])
    patient = make_patient(team=front_desk)
    raw_email = patient_email(message_id=f"<{uuid.uuid4().hex}@mail.example.com>").as_bytes()
    signature = email_signature(raw_email, secret=settings.EMAIL_WEBHOOK_SECRET)
    redis.stop()

    posts = {
        "email": lambda: post_raw_email(Client(), raw_email, signature=signature),
        "sms": lambda: post_twilio(SMS, sms_params("Running late", sid="SM" + uuid.uuid4().hex)),
        "portal": lambda: _post_portal(portal_key, patient, f"pm-{uuid.uuid4().hex}"),
        "replayed email": lambda: post_raw_email(Client(), raw_email, signature=signature),
    }
    answers = {channel: post() for channel, post in posts.items()}
    replayed = answers.pop("replayed email")

    assert {channel: answer.status_code for channel, answer in answers.items()} == {
        "email": 201,
        "sms": 200,
        "portal": 201,
    }
    # The replay check needs no cache: the signature's use is a row.
    assert replayed.status_code == 403
    assert replayed.json()["error"]["code"] == "invalid_signature"
    assert WebhookSignatureUse.objects.filter(signature=signature.split("v1=")[1]).exists()
    inbound = Interaction.objects.filter(direction=Interaction.Direction.INBOUND)
    assert sorted(inbound.values_list("channel", flat=True)) == sorted(
        [Channel.EMAIL, Channel.SMS, Channel.PORTAL]
    )
    assert not inbound.filter(processed_at__isnull=False).exists()
    assert (
        RawEvent.objects.filter(
            interaction__in=inbound.filter(channel__in=[Channel.EMAIL, Channel.SMS])
        ).count()
        == 2
    )

    redis.start()
    worker = start_worker("inbound")
    # As if the sweeper's grace period had passed since they arrived.
    inbound.update(
        created_at=timezone.now() - timedelta(seconds=settings.SWEEPER_GRACE_SECONDS + 1)
    )
    sweep_channels()

    wait_for(
        lambda: not inbound.filter(processed_at__isnull=True).exists(),
        timeout=20,
        what="the worker to process the three swept messages",
    )
    # The sweep handed the three over: drain tasks took them off the list (one, and
    # its successor when the worker's first messages took it past its time).
    ran = worker.tasks_run()
    assert ran["channels_app.tasks.inbound_drain"] >= 1
    assert "channels_app.tasks.inbound_process" not in ran
