"""`Idempotency-Key` on every POST that creates something (issue 16, defect 12): the
first successful result replayed for 24 hours, the same key with another body a
422, the stored answer encrypted."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from channels_app.models import ChannelAccount, Interaction
from compliance.models import AuditEvent, BreakGlassGrant, Disclosure
from contactcenter import roles
from contactcenter.idempotency import idempotent_requests_purge
from contactcenter.models import IdempotentRequest
from escalation.models import EscalationRule
from patients.models import Appointment, Channel, Patient
from tests.factories import bearer, make_api_key, make_staff, token_for


@pytest.fixture
def portal_account(north):
    return ChannelAccount.objects.create(kind=Channel.PORTAL, name="Portal", team=north)


def post(client, url, payload, headers, key):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(
        url, json.dumps(payload), content_type="application/json", **headers, **extra
    )


def test_a_portal_retry_without_message_id_stores_the_message_once(client, patient, portal_account):
    key, _ = make_api_key(scopes=["portal:write"])
    payload = {"patient": str(patient.pk), "body": "My prescription ran out."}

    first = post(client, "/api/v1/portal/messages/", payload, bearer(key), "retry-1")
    again = post(client, "/api/v1/portal/messages/", payload, bearer(key), "retry-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Interaction.objects.filter(patient=patient).count() == 1


def test_the_same_key_with_another_body_is_a_422(client, patient, portal_account):
    key, _ = make_api_key(scopes=["portal:write"])
    url = "/api/v1/portal/messages/"
    post(client, url, {"patient": str(patient.pk), "body": "First"}, bearer(key), "k-1")

    response = post(client, url, {"patient": str(patient.pk), "body": "Other"}, bearer(key), "k-1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Interaction.objects.filter(patient=patient).count() == 1


def test_keys_belong_to_their_caller(client, patient, portal_account):
    payload = {"patient": str(patient.pk), "body": "Hello"}
    for _ in range(2):
        key, _ = make_api_key(scopes=["portal:write"])
        response = post(client, "/api/v1/portal/messages/", payload, bearer(key), "same")
        assert response.status_code == 201
    assert Interaction.objects.filter(patient=patient).count() == 2


def test_a_key_older_than_24_hours_creates_again(client, patient, portal_account):
    key, _ = make_api_key(scopes=["portal:write"])
    payload = {"patient": str(patient.pk), "body": "Hello"}
    post(client, "/api/v1/portal/messages/", payload, bearer(key), "old")
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = post(client, "/api/v1/portal/messages/", payload, bearer(key), "old")

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert Interaction.objects.filter(patient=patient).count() == 2


def test_a_failed_request_is_not_replayed(client, member):
    headers = token_for(member)
    refused = post(client, "/api/v1/patients/", {"given_name": "Ada"}, headers, "p-1")
    assert refused.status_code == 400

    created = post(
        client,
        "/api/v1/patients/",
        {"given_name": "Ada", "family_name": "Lovelace", "mrn": "MRN-IDEM-1", "time_zone": "UTC"},
        headers,
        "p-2",
    )
    assert created.status_code == 201
    assert IdempotentRequest.objects.filter(key="p-1").count() == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "é"])
def test_a_malformed_key_is_a_400(client, member, key):
    response = client.post(
        "/api/v1/patients/",
        {"given_name": "Ada", "family_name": "Lovelace", "mrn": "MRN-IDEM-2", "time_zone": "UTC"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key,
        **token_for(member),
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not Patient.objects.exists()


def test_every_creating_post_replays_its_first_result(client, patient, north):
    """Patients, appointments, disclosures, break-glass grants, escalations and
    rules: the second request with the key creates nothing and answers the same."""
    member = make_staff("idem-agent", role=roles.AGENT, teams=[north])
    officer = make_staff("idem-officer", role=roles.COMPLIANCE)
    admin = make_staff("idem-admin", role=roles.ADMIN)
    when = (timezone.now() + timedelta(days=3)).isoformat()
    cases = [
        (
            token_for(member),
            "/api/v1/patients/",
            {
                "given_name": "Ada",
                "family_name": "Lovelace",
                "mrn": "MRN-IDEM-3",
                "time_zone": "UTC",
            },
            lambda: Patient.objects.count(),
        ),
        (
            token_for(member),
            f"/api/v1/patients/{patient.pk}/appointments/",
            {"starts_at": when},
            lambda: Appointment.objects.count(),
        ),
        (
            token_for(officer),
            f"/api/v1/patients/{patient.pk}/disclosures/",
            {
                "disclosed_at": timezone.now().isoformat(),
                "recipient_name": "County Health",
                "description": "Immunisations",
                "purpose": "Public health reporting",
            },
            lambda: Disclosure.objects.count(),
        ),
        (
            token_for(make_staff("idem-outsider", role=roles.AGENT)),
            f"/api/v1/patients/{patient.pk}/break-glass/",
            {"reason": "Unconscious patient arrived in the emergency room"},
            lambda: BreakGlassGrant.objects.count(),
        ),
        (
            token_for(admin),
            "/api/v1/escalation-rules/",
            {"name": "Chest pain", "conditions": {"phrases": ["chest pain"]}, "actions": {}},
            lambda: EscalationRule.objects.count(),
        ),
    ]
    for n, (headers, url, payload, count) in enumerate(cases):
        first = post(client, url, payload, headers, f"create-{n}")
        assert first.status_code == 201, (url, first.content)
        before = count()
        again = post(client, url, payload, headers, f"create-{n}")
        assert (again.status_code, again.json()) == (201, first.json()), url
        assert count() == before, url


def test_the_stored_answer_is_encrypted_and_its_replay_is_audited(client, member):
    headers = token_for(member)
    payload = {
        "given_name": "Grace",
        "family_name": "Hopper",
        "mrn": "MRN-IDEM-4",
        "time_zone": "UTC",
    }
    first = post(client, "/api/v1/patients/", payload, headers, "audit-1")
    post(client, "/api/v1/patients/", payload, headers, "audit-1")

    with connection.cursor() as cursor:
        cursor.execute("SELECT response_body FROM contactcenter_idempotentrequest")
        (stored,) = cursor.fetchone()
    assert "Hopper" not in stored
    replay = AuditEvent.objects.filter(resource_type="patient").order_by("-id").first()
    assert replay.details["idempotent_replay"] is True
    assert replay.patient_ids == [first.json()["id"]]


def test_purge_forgets_keys_older_than_24_hours(client, member):
    post(
        client,
        "/api/v1/patients/",
        {"given_name": "Ada", "family_name": "Lovelace", "mrn": "MRN-IDEM-5", "time_zone": "UTC"},
        token_for(member),
        "purge-1",
    )
    assert idempotent_requests_purge() == 0
    assert idempotent_requests_purge(now=timezone.now() + timedelta(hours=25)) == 1
