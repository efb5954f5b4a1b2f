"""The SMART Backend Services token endpoint: what it accepts and what it refuses."""

from urllib.parse import urlencode

import pytest

from compliance.models import AuditEvent
from tests.fhir.conftest import ASSERTION_TYPE, Keys

pytestmark = pytest.mark.django_db

TOKEN_URL = "http://testserver/fhir/auth/token"


def _request(client, assertion, scope="system/Patient.rs"):
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return client.post(
        "/fhir/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded"
    )


def test_es384_assertion_gets_a_token_that_reads(client, smart_client, ec_keys, patient):
    response = _request(
        client, ec_keys.assertion(client_id=smart_client.prefix, audience=TOKEN_URL)
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    token = response.json()["access_token"]
    read = client.get(f"/fhir/Patient/{patient.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert read.status_code == 200
    assert AuditEvent.objects.filter(resource_type="fhir_token", outcome="success").exists()


@pytest.mark.parametrize(
    "case",
    ["unknown key", "wrong audience", "replayed", "long lived", "foreign scope", "not a jwt"],
)
def test_refused_assertions(client, smart_client, rsa_keys, case):
    claims = {"client_id": smart_client.prefix, "audience": TOKEN_URL}
    scope = "system/Patient.rs"
    if case == "unknown key":
        assertion = Keys("RS384").assertion(**claims)
    elif case == "wrong audience":
        assertion = rsa_keys.assertion(client_id=smart_client.prefix, audience="http://elsewhere/")
    elif case == "replayed":
        assertion = rsa_keys.assertion(**claims, jti="same")
        assert _request(client, assertion).status_code == 200
    elif case == "long lived":
        assertion = rsa_keys.assertion(**claims, lifetime=3600)
    elif case == "foreign scope":
        assertion, scope = rsa_keys.assertion(**claims), "system/Observation.rs"
    else:
        assertion = "not-a-jwt"
    response = _request(client, assertion, scope=scope)
    assert response.status_code in (400, 401)
    body = response.json()
    assert body["error"] in ("invalid_client", "invalid_scope")
    assert AuditEvent.objects.filter(resource_type="fhir_token", outcome="denied").exists()


def test_a_revoked_scope_stops_working_on_live_tokens(client, smart_client, rsa_keys, patient):
    response = _request(
        client, rsa_keys.assertion(client_id=smart_client.prefix, audience=TOKEN_URL)
    )
    token = response.json()["access_token"]
    smart_client.scopes = [s for s in smart_client.scopes if s != "patients:read"]
    smart_client.save(update_fields=["scopes"])
    read = client.get(f"/fhir/Patient/{patient.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert read.status_code == 403
