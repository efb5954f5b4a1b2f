"""The portal API: messages a patient wrote in the portal come in through
`POST /api/v1/portal/messages/` with a scoped API key, and staff replies go back
to the portal's webhook, signed, with an Idempotency-Key, through a real worker."""

import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import Client

from channels_app.adapters.portal import SIGNATURE_HEADER, portal_signature
from channels_app.models import ChannelAccount, Conversation, Interaction, OutboundMessage
from channels_app.services import outbound_create
from compliance.models import AuditEvent
from patients.models import Channel
from tests.factories import TeamFactory, bearer, make_api_key, make_patient, token_for

URL = "/api/v1/portal/messages/"
PORTAL_SECRET = "portal-webhook-secret-for-tests"


@pytest.fixture
def patient(front_desk):
    return make_patient(team=front_desk)


@pytest.fixture
def portal_key(db):
    key, _client = make_api_key(scopes=["portal:write"])
    return key


@pytest.fixture
def post_portal(client, portal_key):
    def post(payload, *, key=portal_key, **headers):
        return client.post(
            URL, json.dumps(payload), content_type="application/json", **bearer(key), **headers
        )

    return post


def _message(patient, **fields):
    return {"patient": str(patient.pk), "body": "My prescription ran out.", **fields}


def _last_audit():
    return AuditEvent.objects.order_by("-id").first()


# --- Inbound -----------------------------------------------------------------------


@pytest.mark.django_db
def test_portal_message_is_stored_on_a_new_portal_conversation_of_the_patient(post_portal, patient):
    response = post_portal(_message(patient, message_id="pm-1", subject="Refill"))

    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True
    interaction = Interaction.objects.get(pk=body["interaction"])
    assert str(interaction.conversation_id) == body["conversation"]
    assert (interaction.channel, interaction.direction) == (Channel.PORTAL, "inbound")
    assert interaction.body == "My prescription ran out."
    assert interaction.provider_id == "pm-1"
    assert interaction.patient_id == patient.pk
    conversation = interaction.conversation
    assert (conversation.patient_id, conversation.team_id) == (patient.pk, patient.team_id)
    assert conversation.subject == "Refill"
    audit = _last_audit()
    assert (audit.action, audit.outcome, audit.http_status) == ("create", "success", 201)
    assert audit.patient_ids == [str(patient.pk)]


@pytest.mark.django_db
@pytest.mark.parametrize("thread_id", ["", "thread-7"])
def test_the_same_message_id_again_answers_200_and_stores_nothing_new(
    post_portal, patient, thread_id
):
    payload = _message(patient, message_id="pm-dup", thread_id=thread_id)
    first = post_portal(payload).json()

    again = post_portal(payload)

    assert again.status_code == 200
    assert again.json() == {**first, "created": False}
    assert Interaction.objects.count() == 1
    # A redelivery must not leave an empty conversation in the inbox either.
    assert Conversation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_message_store_one_interaction_and_one_conversation(
    patient, portal_key
):
    payload = json.dumps(_message(patient, message_id="pm-race"))
    statuses, errors = [], []
    barrier = threading.Barrier(6)

    def deliver():
        try:
            barrier.wait()
            response = Client().post(
                URL, payload, content_type="application/json", **bearer(portal_key)
            )
            statuses.append(response.status_code)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert sorted(statuses) == [200] * 5 + [201]
    assert Interaction.objects.count() == 1
    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_the_same_thread_joins_its_conversation_and_a_new_thread_opens_another(
    post_portal, patient
):
    first = post_portal(_message(patient, thread_id="t-1", message_id="a")).json()
    same_thread = post_portal(_message(patient, thread_id="t-1", message_id="b")).json()
    other_thread = post_portal(_message(patient, thread_id="t-2", message_id="c")).json()

    assert same_thread["conversation"] == first["conversation"]
    assert other_thread["conversation"] != first["conversation"]
    assert Conversation.objects.get(pk=first["conversation"]).interactions.count() == 2


@pytest.mark.django_db
def test_a_key_without_portal_write_gets_403_with_an_audit_row(post_portal, patient):
    key, client = make_api_key(scopes=["patients:read", "timeline:read"])

    response = post_portal(_message(patient), key=key)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Interaction.objects.exists()
    audit = _last_audit()
    assert (audit.outcome, audit.http_status) == ("denied", 403)
    assert audit.api_client_id == client.pk


@pytest.mark.django_db
def test_a_staff_user_gets_403_with_an_audit_row(client, patient, agent):
    response = client.post(
        URL, json.dumps(_message(patient)), content_type="application/json", **token_for(agent)
    )

    assert response.status_code == 403
    assert not Interaction.objects.exists()
    audit = _last_audit()
    assert (audit.outcome, audit.http_status, audit.actor_user_id) == ("denied", 403, agent.pk)


@pytest.mark.django_db
def test_an_unknown_patient_is_404(post_portal):
    response = post_portal({"patient": str(uuid.uuid4()), "body": "hello"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_a_key_bound_to_another_team_cannot_post_for_this_patient(post_portal, patient):
    other_team = TeamFactory(name="Cardiology")
    key, _client = make_api_key(scopes=["portal:write"], team=other_team)

    response = post_portal(_message(patient), key=key)

    # 404, not 403: the key must not learn that the patient exists.
    assert response.status_code == 404
    assert not Interaction.objects.exists()
    assert not Conversation.objects.exists()
    assert _last_audit().outcome == "denied"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"body": "no patient"}, {"patient"}),
        ({"patient": "not-a-uuid", "body": "x"}, {"patient"}),
        ({"patient": str(uuid.uuid4())}, {"body"}),
        ({"patient": str(uuid.uuid4()), "body": "x", "thread_id": "t" * 129}, {"thread_id"}),
    ],
)
def test_invalid_input_is_400_in_the_error_shape(post_portal, payload, fields):
    response = post_portal(payload)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["details"]) == fields
    assert error["request_id"]
    assert not Interaction.objects.exists()


# --- Outbound through the portal adapter --------------------------------------------


class PortalEndpoint:
    """The portal system's webhook on a loopback port: records every request and
    answers the scripted statuses in order (200 once the script is empty)."""

    def __init__(self):
        self.requests = []
        self.script = deque()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with endpoint._lock:
                    endpoint.requests.append((dict(self.headers.items()), body))
                    status = endpoint.script.popleft() if endpoint.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                """Quiet: the recorded requests are the log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/contactcenter"

    def received(self):
        with self._lock:
            return list(self.requests)


@pytest.fixture
def portal_endpoint():
    endpoint = PortalEndpoint()
    endpoint.thread.start()
    try:
        yield endpoint
    finally:
        endpoint.server.shutdown()
        endpoint.server.server_close()
        endpoint.thread.join(timeout=5)


@pytest.fixture
def portal_conversation(portal_endpoint, front_desk, patient, post_portal):
    ChannelAccount.objects.create(
        kind=Channel.PORTAL,
        name="Patient portal",
        address=portal_endpoint.url,
        team=front_desk,
        secret=PORTAL_SECRET,
    )
    # A message nothing answers by itself: a refill request would start the refill
    # intake, whose question is one more POST to this endpoint.
    response = post_portal(
        _message(
            patient, thread_id="thread-42", message_id="pm-42", body="Thanks, see you next week."
        )
    )
    return Conversation.objects.get(pk=response.json()["conversation"])


@pytest.fixture
def fast_retries(settings):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 0.2


def _wait_for_state(outbound, states, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outbound.refresh_from_db()
        if outbound.state in states:
            return outbound
        time.sleep(0.05)
    raise AssertionError(f"delivery stayed {outbound.state!r}, expected one of {states}")


def _verify_signature(headers, body):
    parts = dict(part.split("=", 1) for part in headers[SIGNATURE_HEADER].split(","))
    expected = portal_signature(secret=PORTAL_SECRET, timestamp=int(parts["t"]), body=body)
    assert headers[SIGNATURE_HEADER] == expected
    assert abs(time.time() - int(parts["t"])) < 60


def test_staff_reply_reaches_the_portal_signed_with_an_idempotency_key(
    celery_worker_real, portal_endpoint, portal_conversation, agent
):
    reply = outbound_create(conversation=portal_conversation, body="Refill sent.", author=agent)

    outbound = _wait_for_state(reply.outbound, {OutboundMessage.State.SENT})

    [(headers, body)] = portal_endpoint.received()
    _verify_signature(headers, body)
    assert headers["Idempotency-Key"] == str(outbound.pk)
    assert headers["Content-Type"] == "application/json"
    sent = json.loads(body)
    assert sent["message_id"] == str(reply.pk)
    assert sent["thread_id"] == "thread-42"
    assert sent["patient_id"] == str(portal_conversation.patient_id)
    assert sent["body"] == "Refill sent."
    assert outbound.attempts == 1


def test_a_500_from_the_portal_is_retried_with_the_same_idempotency_key(
    celery_worker_real, portal_endpoint, portal_conversation, agent, fast_retries
):
    portal_endpoint.script.append(500)
    reply = outbound_create(conversation=portal_conversation, body="Try again", author=agent)

    outbound = _wait_for_state(reply.outbound, {OutboundMessage.State.SENT})

    attempts = portal_endpoint.received()
    assert len(attempts) == 2
    assert {headers["Idempotency-Key"] for headers, _ in attempts} == {str(outbound.pk)}
    for headers, body in attempts:
        _verify_signature(headers, body)
    assert outbound.attempts == 2


def test_a_400_from_the_portal_fails_without_retry(
    celery_worker_real, portal_endpoint, portal_conversation, agent, fast_retries
):
    portal_endpoint.script.append(400)
    reply = outbound_create(conversation=portal_conversation, body="Refused", author=agent)

    outbound = _wait_for_state(reply.outbound, {OutboundMessage.State.FAILED})
    # Longer than the first retry's backoff would be, so a retry would have shown.
    time.sleep(0.5)

    assert len(portal_endpoint.received()) == 1
    outbound.refresh_from_db()
    assert (outbound.state, outbound.attempts) == (OutboundMessage.State.FAILED, 1)
    assert outbound.last_error == "portal http 400"


@pytest.mark.django_db
def test_the_statements_of_a_portal_message_on_an_open_thread(
    post_portal, patient, django_assert_num_queries
):
    """The key, the patient, the thread's conversation locked, the interaction, the
    raw event, the conversation's update, the audit row, with the savepoints of the
    view's transactions (inside this test's). The conversation's channel account is
    not read: the conversation is known, so storing the message needs none."""
    ChannelAccount.objects.create(
        kind=Channel.PORTAL,
        name="Portal",
        address="https://portal.example.test/hook",
        team=patient.team,
    )
    post_portal(_message(patient, thread_id="t-1", message_id="a"))
    assert Conversation.objects.get().account is not None

    with django_assert_num_queries(11):
        response = post_portal(_message(patient, thread_id="t-1", message_id="b"))

    assert response.status_code == 201
