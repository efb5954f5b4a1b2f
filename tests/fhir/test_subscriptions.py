"""Rest-hook subscriptions: a new Communication of a subscribed patient reaches
the subscriber's endpoint (a loopback receiver), signed, retried by the worker,
and logged."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from channels_app.adapters.portal import portal_signature
from channels_app.models import Interaction
from channels_app.services import inbound_record
from channels_app.tasks import inbound_process
from fhir.models import Subscription, SubscriptionDelivery
from patients.models import Channel
from tests.factories import make_api_key
from tests.fhir.conftest import validated

pytestmark = pytest.mark.slow


class Receiver:
    """An HTTP endpoint on a free loopback port that answers the statuses it is
    given in turn (then 200) and keeps what it received."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((dict(self.headers), body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _subscribe(client, headers, *, criteria, endpoint, payload=True):
    channel = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = "application/fhir+json"
    created = client.post(
        "/fhir/Subscription",
        data=json.dumps(
            {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "EHR inbox",
                "criteria": criteria,
                "channel": channel,
            }
        ),
        content_type="application/fhir+json",
        **headers,
    )
    assert created.status_code == 201, created.content
    return created


def _text(sms_line, address, provider_id, body="Hello"):
    return inbound_record(
        channel=Channel.SMS,
        account=sms_line,
        address=address,
        body=body,
        provider_id=provider_id,
        occurred_at=timezone.now(),
        source="twilio",
        raw_payload={},
    )


def _wait_until(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_new_communication_is_notified_signed_after_a_retry(
    celery_worker_real, client, fhir_key, patient, sms_line, other_patient, settings
):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 0.2
    receiver = Receiver(statuses=[503])
    try:
        headers = fhir_key("timeline:read", "patients:read")
        created = _subscribe(
            client,
            headers,
            criteria=f"Communication?patient=Patient/{patient.pk}",
            endpoint=receiver.url,
        )
        subscription = validated(created.json())
        secret = subscription.extension[0].valueString
        # A text from the subscribed patient, and one from another team's patient.
        for address, provider_id in (("+14155550100", "SM1"), ("+14155550199", "SM2")):
            ingested = _text(sms_line, address, provider_id, "Can I move my visit?")
            inbound_process.delay(str(ingested.interaction.pk))
        delivered = SubscriptionDelivery.objects.filter(state="delivered")
        _wait_until(lambda: delivered.exists())
        delivery = delivered.get()
        assert delivery.attempts == 2  # the 503, then the retry
        assert SubscriptionDelivery.objects.count() == 1  # nothing for the other patient
        headers_seen, body = receiver.received[-1]
        timestamp = headers_seen["X-Contactcenter-Signature"].split(",")[0].removeprefix("t=")
        assert headers_seen["X-Contactcenter-Signature"] == portal_signature(
            secret=secret, timestamp=int(timestamp), body=body
        )
        communication = validated(json.loads(body))
        interaction = Interaction.objects.get(pk=delivery.interaction_id)
        assert communication.id == str(interaction.pk)
        assert communication.payload[0].contentString == "Can I move my visit?"
        read = client.get(f"/fhir/Subscription/{subscription.id}", **headers)
        assert read.json()["status"] == "active"
        assert "extension" not in read.json()  # the secret is shown once
    finally:
        receiver.close()


def test_a_refusing_endpoint_fails_the_delivery_and_errors_the_subscription(
    celery_worker_real, client, fhir_key, patient, sms_line
):
    receiver = Receiver(statuses=[410])
    try:
        headers = fhir_key("communications:read", "patients:read")
        _subscribe(client, headers, criteria="Communication", endpoint=receiver.url, payload=False)
        ingested = _text(sms_line, "+14155550100", "SM3", "Hello")
        inbound_process.delay(str(ingested.interaction.pk))
        failed = SubscriptionDelivery.objects.filter(state="failed")
        _wait_until(lambda: failed.exists())
        assert failed.get().last_status_code == 410
        assert Subscription.objects.get().status == "error"
        assert receiver.received[0][1] == b""  # no payload asked for: an empty ping
    finally:
        receiver.close()


def test_every_path_that_adds_a_communication_notifies_once(
    celery_worker_real, client, fhir_key, patient, sms_line, post_twilio, north
):
    """The webhook, the worker's automated hand-off confirmation, a REST API reply
    and a workspace reply each reach the subscriber: the delivery is recorded in
    the transaction that stores the interaction (channels_app's interaction_added),
    whatever path stored it. Staff notes and timeline events are not messages."""
    from contactcenter import roles
    from tests.channels_app.conftest import sms_params
    from tests.factories import make_staff, token_for

    receiver = Receiver()
    try:
        headers = fhir_key("timeline:read", "patients:read")
        _subscribe(
            client,
            headers,
            criteria=f"Communication?patient=Patient/{patient.pk}",
            endpoint=receiver.url,
        )
        # 1. The Twilio webhook (signed with the twilio package), then the worker,
        # which hands the conversation to a person and says so to the patient.
        response = post_twilio(
            "/webhooks/twilio/sms/",
            sms_params("AGENT", sender="+14155550100", to=sms_line.address),
        )
        assert response.status_code == 200
        inbound = Interaction.objects.get(direction="inbound")
        _wait_until(lambda: Interaction.objects.filter(metadata__handoff=True).exists(), seconds=30)
        confirmation = Interaction.objects.get(metadata__handoff=True)
        conversation = inbound.conversation
        agent = make_staff("sub-agent", role=roles.AGENT, teams=[north])
        # 2. A reply through the REST API.
        api = client.post(
            f"/api/v1/conversations/{conversation.pk}/messages/",
            {"body": "Hello from the API"},
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="sub-api-1",
            **token_for(agent),
        )
        assert api.status_code == 201, api.content
        api_reply = Interaction.objects.get(author=agent, direction="outbound")
        # 3. A reply from the workspace composer.
        client.force_login(agent)
        page = client.post(
            f"/conversations/{conversation.pk}/reply/",
            {"body": "Hello from the workspace", "mode": "reply", "idempotency_key": "sub-ws-1"},
            HTTP_HX_REQUEST="true",
        )
        assert page.status_code == 200, page.content
        workspace_reply = Interaction.objects.exclude(pk=api_reply.pk).get(
            author=agent, direction="outbound"
        )
        assert workspace_reply.body == "Hello from the workspace"

        expected = {str(i.pk) for i in (inbound, confirmation, api_reply, workspace_reply)}
        delivered = SubscriptionDelivery.objects.filter(state="delivered")
        _wait_until(lambda: delivered.count() >= len(expected))
        assert {str(d.interaction_id) for d in SubscriptionDelivery.objects.all()} == expected
        bodies = {json.loads(body)["id"] for _headers, body in receiver.received}
        assert bodies == expected
        # Events were written meanwhile (the hand-off), and notified nobody.
        assert Interaction.objects.filter(conversation=conversation, kind="event").exists()
    finally:
        receiver.close()


@pytest.mark.django_db
def test_a_delivery_the_broker_never_got_is_queued_again_by_beat(patient, sms_line, monkeypatch):
    from datetime import timedelta

    from fhir import services, tasks

    subscription = Subscription.objects.create(
        api_client=make_api_key(scopes=["timeline:read"])[1],
        criteria="Communication",
        endpoint="http://127.0.0.1:9/hook",
        secret="s",
    )
    ingested = _text(sms_line, "+14155550100", "SM9", "Hello")
    inbound_process.run(str(ingested.interaction.pk))
    delivery = SubscriptionDelivery.objects.get(subscription=subscription)
    assert str(delivery.interaction_id) == str(ingested.interaction.pk)
    assert services.deliveries_never_started() == []  # still within its grace
    SubscriptionDelivery.objects.filter(pk=delivery.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    queued = []
    monkeypatch.setattr(tasks.subscription_deliver, "delay", queued.append)
    monkeypatch.setattr(tasks.bulk_export_run, "delay", queued.append)
    tasks.purge_expired()
    assert queued == [delivery.pk]


@pytest.mark.django_db
def test_a_received_message_is_notified_by_the_inbound_task_once(patient, sms_line):
    """Off the webhook's request: the provider's message is stored with no delivery
    row; the inbound task writes it, and running the task again writes none more."""
    subscription = Subscription.objects.create(
        api_client=make_api_key(scopes=["timeline:read"])[1],
        criteria="Communication",
        endpoint="http://127.0.0.1:9/hook",
        secret="s",
    )
    ingested = _text(sms_line, "+14155550100", "SM10", "Hello")
    assert not SubscriptionDelivery.objects.exists()

    inbound_process.run(str(ingested.interaction.pk))
    Interaction.objects.filter(pk=ingested.interaction.pk).update(processed_at=None)
    inbound_process.run(str(ingested.interaction.pk))

    [delivery] = SubscriptionDelivery.objects.all()
    assert (delivery.subscription_id, delivery.interaction_id) == (
        subscription.pk,
        ingested.interaction.pk,
    )


@pytest.mark.django_db
def test_a_message_nobody_subscribed_to_costs_one_statement(
    patient, other_patient, sms_line, django_assert_num_queries
):
    """Every stored message asks whether an active subscription names its patient
    or all of a client's; one naming another patient, or one switched off, is no
    answer, and the question is the only statement."""
    from fhir.services import subscriptions_notify

    client = make_api_key(scopes=["timeline:read"])[1]
    Subscription.objects.create(
        api_client=client,
        criteria=f"Communication?patient=Patient/{other_patient.pk}",
        patient_id=other_patient.pk,
        endpoint="http://127.0.0.1:9/hook",
        secret="s",
    )
    Subscription.objects.create(
        api_client=client,
        criteria="Communication",
        endpoint="http://127.0.0.1:9/hook",
        secret="s",
        status=Subscription.Status.OFF,
    )
    ingested = _text(sms_line, "+14155550100", "SM11", "Hello")
    assert ingested.interaction.patient_id == patient.pk

    with django_assert_num_queries(1):
        assert subscriptions_notify(interaction=ingested.interaction) == 0
    assert not SubscriptionDelivery.objects.exists()
