"""The CapabilityStatement, discovery and the OperationOutcome of every error."""

import pytest

from fhir import registry
from tests.fhir.conftest import validated

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def test_metadata_needs_no_auth_and_lists_what_the_registry_serves(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(FHIR_JSON)
    statement = validated(response.json())
    assert statement.fhirVersion == "4.0.1"
    served = {r.type: r for r in statement.rest[0].resource}
    assert set(served) == set(registry.RESOURCES)
    for spec in registry.RESOURCES.values():
        assert {p.name for p in served[spec.type].searchParam or []} == spec.search_param_names()
        served_interactions = served[spec.type].interaction or []
        assert [i.code for i in served_interactions] == list(spec.interactions)
        assert [o.name for o in served[spec.type].operation or []] == [
            name for name, _ in spec.operations
        ]
    assert statement.rest[0].security.service[0].coding[0].code == "SMART-on-FHIR"


def test_smart_configuration_names_the_token_endpoint(client):
    body = client.get("/fhir/.well-known/smart-configuration").json()
    assert body["token_endpoint"].endswith("/fhir/auth/token")
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert "system/Patient.rs" in body["scopes_supported"]


def _outcome(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    outcome = validated(response.json())
    assert outcome.get_resource_type() == "OperationOutcome"
    assert outcome.issue[0].code == code
    return outcome.issue[0]


def test_no_credentials_is_401_with_an_outcome(client):
    issue = _outcome(client.get("/fhir/Patient"), 401, "login")
    assert "token" in issue.diagnostics


def test_a_bad_token_is_401(client):
    response = client.get("/fhir/Patient", HTTP_AUTHORIZATION="Bearer ccf_nope")
    _outcome(response, 401, "login")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_staff_token_is_refused(client, member):
    from tests.factories import token_for

    _outcome(client.get("/fhir/Patient", **token_for(member)), 403, "forbidden")


def test_missing_scope_is_403(client, fhir_key, patient):
    headers = fhir_key("audit:read")
    issue = _outcome(client.get(f"/fhir/Patient/{patient.pk}", **headers), 403, "forbidden")
    assert "system/Patient.r" in issue.diagnostics


def test_unknown_search_parameter_is_400(client, fhir_key):
    issue = _outcome(
        client.get("/fhir/Patient?name=Ada", **fhir_key("patients:read")), 400, "invalid"
    )
    assert "name" in issue.diagnostics
    _outcome(client.get("/fhir/Patient?phone:exact=1", **fhir_key("patients:read")), 400, "invalid")


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Patient/not-a-uuid",
        "/fhir/Patient?_id=42",
        "/fhir/Patient?phone=12",
        "/fhir/Patient?_count=many",
        "/fhir/Patient?_cursor=garbage",
        "/fhir/Communication?patient=Patient/xyz",
        "/fhir/Communication?patient=Group/3f1c1f8e-8a2b-4d7e-9d55-1d5c3a8e2b10",
        "/fhir/Communication?sent=yesterday",
        "/fhir/Communication?received=2026-01-01&sent=2026-01-01",
        "/fhir/Communication?medium=fax",
        "/fhir/Appointment?date=soon",
        "/fhir/AuditEvent?entity=nothing",
        "/fhir/Communication?patient=3f1c1f8e-8a2b-4d7e-9d55-1d5c3a8e2b10&sent=yesterday",
        "/fhir/Communication?patient=3f1c1f8e-8a2b-4d7e-9d55-1d5c3a8e2b10&medium=fax",
    ],
)
def test_malformed_input_is_400_never_500(client, fhir_key, url):
    headers = fhir_key("patients:read", "timeline:read", "audit:read")
    _outcome(client.get(url, **headers), 400, "invalid")


def test_unknown_paths_and_types_are_404_outcomes(client):
    _outcome(client.get("/fhir/Observation"), 404, "not-found")


def test_a_body_that_is_not_fhir_is_400(client, fhir_key):
    headers = fhir_key("patients:write")
    response = client.post(
        "/fhir/Patient",
        data='{"resourceType": "Patient", "nickname": "x"}',
        content_type=FHIR_JSON,
        **headers,
    )
    _outcome(response, 400, "invalid")
    response = client.post("/fhir/Patient", data="{", content_type=FHIR_JSON, **headers)
    _outcome(response, 400, "invalid")


def test_expired_tokens_and_spent_assertions_are_purged_by_beat(smart_client):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from config.celery import app
    from fhir.models import AccessToken, UsedAssertion
    from fhir.tasks import purge_expired

    now = timezone.now()
    for expires_at in (now - timedelta(seconds=1), now + timedelta(minutes=5)):
        AccessToken.objects.create(
            token_hash=f"{expires_at.timestamp():064.0f}",
            api_client=smart_client,
            scopes=["system/Patient.rs"],
            issued_at=now,
            expires_at=expires_at,
        )
        UsedAssertion.objects.create(
            api_client=smart_client, jti=str(expires_at.timestamp()), expires_at=expires_at
        )
    entry = settings.CELERY_BEAT_SCHEDULE["fhir-purge-expired"]
    assert entry["task"] in app.tasks
    purge_expired()
    assert AccessToken.objects.filter(expires_at__gt=now).count() == 1
    assert AccessToken.objects.count() == 1
    assert UsedAssertion.objects.count() == 1
