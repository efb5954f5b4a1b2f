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
        created = client.post(
            "/fhir/Subscription",
            data=json.dumps(
                {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "EHR inbox",
                    "criteria": f"Communication?patient=Patient/{patient.pk}",
                    "channel": {
                        "type": "rest-hook",
                        "endpoint": receiver.url,
                        "payload": "application/fhir+json",
                    },
                }
            ),
            content_type="application/fhir+json",
            **headers,
        )
        assert created.status_code == 201, created.content
        subscription = validated(created.json())
        secret = subscription.extension[0].valueString
        # A text from the subscribed patient, and one from another team's patient.
        for address, provider_id in (("+14155550100", "SM1"), ("+14155550199", "SM2")):
            ingested = inbound_record(
                channel=Channel.SMS,
                account=sms_line,
                address=address,
                body="Can I move my visit?",
                provider_id=provider_id,
                occurred_at=timezone.now(),
                source="twilio",
                raw_payload={},
            )
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
        created = client.post(
            "/fhir/Subscription",
            data=json.dumps(
                {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": "EHR inbox",
                    "criteria": "Communication",
                    "channel": {"type": "rest-hook", "endpoint": receiver.url},
                }
            ),
            content_type="application/fhir+json",
            **headers,
        )
        assert created.status_code == 201, created.content
        ingested = inbound_record(
            channel=Channel.SMS,
            account=sms_line,
            address="+14155550100",
            body="Hello",
            provider_id="SM3",
            occurred_at=timezone.now(),
            source="twilio",
            raw_payload={},
        )
        inbound_process.delay(str(ingested.interaction.pk))
        failed = SubscriptionDelivery.objects.filter(state="failed")
        _wait_until(lambda: failed.exists())
        assert failed.get().last_status_code == 410
        assert Subscription.objects.get().status == "error"
        assert receiver.received[0][1] == b""  # no payload asked for: an empty ping
    finally:
        receiver.close()
