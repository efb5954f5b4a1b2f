"""A real FHIR client (fhirpy) against the live test server: the SMART backend
token exchange, then create, read, search and paging with it."""

import pytest
import requests
from django.conf import settings
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError

from compliance.models import AuditEvent
from tests.fhir.conftest import ASSERTION_TYPE, validated

pytestmark = pytest.mark.django_db(transaction=True)


def _token(live_server, smart_client, keys, scope):
    token_url = f"{live_server.url}/fhir/auth/token"
    discovered = requests.get(f"{live_server.url}/fhir/.well-known/smart-configuration", timeout=10)
    assert discovered.json()["token_endpoint"] == token_url
    response = requests.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": keys.assertion(client_id=smart_client.prefix, audience=token_url),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _validated_dict(resource):
    return validated(resource.serialize())


def test_smart_token_then_create_read_search_and_page(
    live_server, smart_client, rsa_keys, thread, patient
):
    token = _token(
        live_server,
        smart_client,
        rsa_keys,
        "system/Patient.cruds system/Communication.rs system/Observation.rs",
    )
    # Granted: what the client's scopes allow of what was asked, nothing more.
    assert token["scope"] == "system/Communication.rs system/Patient.crus"
    assert token["expires_in"] == settings.FHIR_TOKEN_SECONDS
    client = SyncFHIRClient(
        f"{live_server.url}/fhir", authorization=f"Bearer {token['access_token']}"
    )

    created = client.resource(
        "Patient",
        identifier=[{"system": settings.FHIR_MRN_SYSTEM, "value": "MRN-FHIR-1"}],
        name=[{"family": "Hamilton", "given": ["Margaret"]}],
        birthDate="1936-08-17",
        telecom=[{"system": "phone", "value": "(415) 555-0142", "rank": 1}],
    )
    created.save()
    assert created.id
    _validated_dict(created)

    read = client.reference("Patient", created.id).to_resource()
    assert read["name"][0]["family"] == "Hamilton"
    assert read["telecom"][0]["value"] == "+14155550142"
    found = client.resources("Patient").search(phone="415-555-0142").fetch()
    assert [p.id for p in found] == [created.id]
    by_identifier = (
        client.resources("Patient")
        .search(identifier=f"{settings.FHIR_MRN_SYSTEM}|MRN-FHIR-1")
        .fetch()
    )
    assert [p.id for p in by_identifier] == [created.id]

    # Upsert by identifier: the same MRN updates, never duplicates.
    updated, was_created = (
        client.resources("Patient")
        .search(identifier=f"{settings.FHIR_MRN_SYSTEM}|MRN-FHIR-1")
        .update(
            client.resource(
                "Patient",
                identifier=[{"system": settings.FHIR_MRN_SYSTEM, "value": "MRN-FHIR-1"}],
                name=[{"family": "Hamilton", "given": ["Margaret", "H."]}],
            )
        )
    )
    assert (updated.id, was_created) == (created.id, False)

    # Communication: pages of 2 followed through the Bundle's next links.
    searchset = client.resources("Communication").search(patient=f"Patient/{patient.pk}").limit(2)
    first_page = searchset.fetch()
    assert len(first_page) == 2
    every = searchset.fetch_all()
    assert len(every) == 4
    ids = [c.id for c in every]
    assert len(set(ids)) == 4
    assert ids[0] == str(thread["reply"].pk)  # newest first
    for communication in every:
        _validated_dict(communication)
        assert (
            communication["partOf"][0]["reference"] == f"Communication/{thread['conversation'].pk}"
        )
        assert communication["payload"][0]["contentString"]
    header = client.reference("Communication", str(thread["conversation"].pk)).to_resource()
    assert header["status"] == "in-progress"

    # A token is worth the scopes it was issued for, not all the client has.
    narrow = _token(live_server, smart_client, rsa_keys, "system/Communication.rs")
    narrow_client = SyncFHIRClient(
        f"{live_server.url}/fhir", authorization=f"Bearer {narrow['access_token']}"
    )
    with pytest.raises(ForbiddenError):
        narrow_client.reference("Patient", created.id).to_resource()

    audited = AuditEvent.objects.filter(api_client_id=smart_client.pk, resource_type="timeline")
    # The first page, the two pages of fetch_all, and the header read.
    assert audited.filter(outcome="success").count() == 4
    assert all(row.patient_ids == [str(patient.pk)] for row in audited)
