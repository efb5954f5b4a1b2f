"""The composer: canned responses filled in for the patient, the three that best
fit the latest message with why (understanding's suggestions), and one send per
click through the same Idempotency-Key rows as the API (contactcenter.idempotency)."""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels_app.models import CannedResponse, Interaction, OutboundMessage
from compliance.models import AuditEvent
from contactcenter.models import IdempotentRequest
from tests.workspace.conftest import receive_sms


@pytest.fixture
def canned(north):
    for title, body in (
        ("Refill on its way", "Hi $first_name, your refill request is with the doctor."),
        ("Opening hours", "Hi $first_name, $practice_name is open 8 to 6, Monday to Friday."),
        ("Bill question", "Hi $first_name, our billing team will call you about the bill."),
        ("Appointment moved", "Hi $first_name, your appointment is moved; see you then."),
    ):
        CannedResponse.objects.create(team=north, title=title, body=body)


@pytest.mark.django_db
def test_suggestions_are_filled_for_the_patient_with_why_and_audited(
    client, agent, outsider, canned, make_sms_conversation, settings
):
    settings.PRACTICE_NAME = "North Clinic"
    conversation = make_sms_conversation(20, body="I need a refill of my prescription please")
    client.force_login(agent)
    page = client.get(f"/conversations/{conversation.pk}/").text
    assert f'hx-get="/conversations/{conversation.pk}/suggestions/"' in page
    response = client.get(f"/conversations/{conversation.pk}/suggestions/")
    assert response.status_code == 200
    text = response.text
    assert text.count('class="suggestion"') == 3
    assert "Refill on its way" in text
    assert 'data-canned-text="Hi Pat20, your refill request is with the doctor."' in text
    assert text.index("Refill on its way") < text.index("Bill question")
    assert "Why: answers intent" in text and "refill" in text
    # The whole list, every placeholder filled.
    assert "North Clinic is open 8 to 6" in text and "$first_name" not in text
    assert AuditEvent.objects.filter(
        actor_user_id=agent.pk,
        details__path=f"/conversations/{conversation.pk}/suggestions/",
        patient_ids=[str(conversation.patient_id)],
    ).exists()

    client.force_login(outsider)
    refused = client.get(f"/conversations/{conversation.pk}/suggestions/")
    assert refused.status_code == 404 and "refill request" not in refused.text


@pytest.mark.django_db
def test_suggestions_cost_the_same_queries_however_long_the_thread(
    client, agent, canned, make_sms_conversation, sms_account
):
    conversation = make_sms_conversation(21, body="Can I get a refill?")
    client.force_login(agent)
    path = f"/conversations/{conversation.pk}/suggestions/"
    client.get(path)

    def count():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    few = count()
    for n in range(8):
        receive_sms(account=sms_account, phone="+14155550021", body=f"refill please {n}")
    assert count() == few


@pytest.mark.django_db
def test_a_repeated_send_is_answered_from_the_api_s_idempotency_rows(
    client, agent, make_sms_conversation
):
    conversation = make_sms_conversation(22)
    client.force_login(agent)
    form = {"body": "On my way", "mode": "reply", "idempotency_key": "ws-key-1"}
    url = f"/conversations/{conversation.pk}/reply/"
    first = client.post(url, form, HTTP_HX_REQUEST="true")
    again = client.post(url, form, HTTP_HX_REQUEST="true")
    assert (first.status_code, again.status_code) == (200, 200)
    assert OutboundMessage.objects.filter(interaction__conversation=conversation).count() == 1
    stored = IdempotentRequest.objects.get()
    assert (stored.principal, stored.key) == (f"user:{agent.pk}", "ws-key-1")
    assert AuditEvent.objects.filter(details__idempotent_replay=True).count() == 1
    # The same key on another message is refused, and sends nothing.
    other = client.post(url, {**form, "body": "Something else"}, HTTP_HX_REQUEST="true")
    assert other.status_code == 422
    assert "already used to send another message" in other.text
    assert OutboundMessage.objects.count() == 1


@pytest.mark.django_db
def test_a_refused_send_frees_its_key_for_the_corrected_one(client, agent, make_sms_conversation):
    conversation = make_sms_conversation(23)
    client.force_login(agent)
    url = f"/conversations/{conversation.pk}/reply/"
    form = {"mode": "reply", "idempotency_key": "ws-key-2"}
    assert client.post(url, {**form, "body": " "}, HTTP_HX_REQUEST="true").status_code == 400
    assert client.post(url, {**form, "body": "Fixed"}, HTTP_HX_REQUEST="true").status_code == 200
    assert Interaction.objects.filter(direction="outbound").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_double_click_sending_twice_at_once_creates_one_message(agent, make_sms_conversation):
    """Two requests with the composer's key in flight together (a double click):
    the second waits on the key's row, then answers with the first's message."""
    conversation = make_sms_conversation(24)
    url = f"/conversations/{conversation.pk}/reply/"
    form = {"body": "See you at 3", "mode": "reply", "idempotency_key": "double-click"}
    start = threading.Barrier(2)
    statuses = []

    def send():
        client = Client()
        client.force_login(agent)
        start.wait()
        try:
            statuses.append(client.post(url, form, HTTP_HX_REQUEST="true").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200, 200]
    assert Interaction.objects.filter(direction="outbound", conversation=conversation).count() == 1
    assert OutboundMessage.objects.count() == 1
