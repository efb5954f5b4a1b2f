"""Consent: each contact point's SMS or email consent and its history, through a
real FHIR client (fhirpy) against the live test server, every resource checked
against the R4 models."""

import pytest
import requests
from fhir.resources.R4B.consent import Consent
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, ResourceNotFound

from compliance.models import AuditEvent
from patients.models import ConsentChange, ContactPoint
from patients.services import sms_opt_in, sms_opt_out
from tests.factories import make_api_key, make_patient
from tests.fhir.conftest import validated

pytestmark = pytest.mark.django_db(transaction=True)


def _client(live_server, *scopes, team):
    key, client = make_api_key(scopes=list(scopes), team=team)
    return SyncFHIRClient(f"{live_server.url}/fhir", authorization=f"Bearer {key}"), client


def _by_channel(resources):
    return {r["provision"]["action"][0]["coding"][0]["code"]: r for r in resources}


def test_consent_per_contact_point_with_its_history(live_server, north, south):
    patient = make_patient(team=north, phones=("+14155550100",), emails=("grace@example.org",))
    sms_opt_out(phone="+14155550100", source=ContactPoint.ConsentSource.KEYWORD)
    sms_opt_in(phone="+14155550100", source=ContactPoint.ConsentSource.STAFF)
    sms_opt_out(phone="+14155550100", source=ContactPoint.ConsentSource.KEYWORD)
    assert ConsentChange.objects.count() == 3
    fhir, api_client = _client(live_server, "patients:read", team=north)

    found = fhir.resources("Consent").search(patient=f"Patient/{patient.pk}").fetch_all()
    assert len(found) == 2
    consents = _by_channel([r.serialize() for r in found])
    for resource in consents.values():
        parsed = validated(resource)
        assert isinstance(parsed, Consent)
        assert parsed.patient.reference == f"Patient/{patient.pk}"
        assert parsed.policyRule.coding[0].code == "OPTOUT"
    sms, email = consents["sms"], consents["email"]
    assert sms["provision"]["type"] == "deny"  # the last change was a STOP
    assert sms["meta"]["versionId"] == "4"  # as created, then three changes
    assert sms["extension"][0]["valueContactPoint"] == {"system": "phone", "value": "+14155550100"}
    assert email["provision"]["type"] == "permit"  # email has no opt-out
    assert email["meta"]["versionId"] == "1"

    read = fhir.reference("Consent", sms["id"]).to_resource().serialize()
    assert read == sms

    history = requests.get(
        f"{live_server.url}/fhir/Consent/{sms['id']}/_history",
        headers={"Authorization": fhir.authorization},
        timeout=10,
    ).json()
    validated(history)
    assert history["type"] == "history"
    versions = [
        (
            e["resource"]["meta"]["versionId"],
            e["resource"]["provision"]["type"],
            next(
                (x["valueCode"] for x in e["resource"]["extension"] if "valueCode" in x),
                None,
            ),
        )
        for e in history["entry"]
    ]
    # Newest first: STOP, staff opt-in, STOP, and the number as created.
    assert versions == [
        ("4", "deny", "keyword"),
        ("3", "permit", "staff"),
        ("2", "deny", "keyword"),
        ("1", "permit", None),
    ]

    # Audited like every read: the search, the read, the history.
    rows = AuditEvent.objects.filter(api_client_id=api_client.pk, resource_type="consent")
    assert rows.count() == 3
    assert all(row.patient_ids == [str(patient.pk)] and row.outcome == "success" for row in rows)


def test_consent_outside_the_team_is_404_and_needs_its_scope(live_server, north, south):
    other = make_patient(team=south, phones=("+14155550199",))
    point = other.contact_points.get()
    fhir, _ = _client(live_server, "patients:read", team=north)
    with pytest.raises(ResourceNotFound):
        fhir.reference("Consent", str(point.pk)).to_resource()
    denied = AuditEvent.objects.get(resource_type="consent")
    assert (denied.outcome, denied.patient_ids) == ("denied", [str(other.pk)])
    missing = requests.get(
        f"{live_server.url}/fhir/Consent?patient=Patient/{other.pk}",
        headers={"Authorization": fhir.authorization},
        timeout=10,
    )
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"

    no_scope, _ = _client(live_server, "timeline:read", team=south)
    with pytest.raises(ForbiddenError):
        no_scope.reference("Consent", str(point.pk)).to_resource()
    bare = requests.get(
        f"{live_server.url}/fhir/Consent?status=active",
        headers={"Authorization": fhir.authorization},
        timeout=10,
    )
    assert bare.status_code == 400  # an unknown parameter
    assert "status" in bare.json()["issue"][0]["diagnostics"]


def test_capability_statement_lists_consent_as_served(client):
    statement = client.get("/fhir/metadata").json()
    resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Consent")
    assert [i["code"] for i in resource["interaction"]] == [
        "read",
        "search-type",
        "history-instance",
    ]
    assert [p["name"] for p in resource["searchParam"]] == ["patient"]
    smart = client.get("/fhir/.well-known/smart-configuration").json()
    assert "system/Consent.rs" in smart["scopes_supported"]
