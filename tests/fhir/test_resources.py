"""Appointment, CommunicationRequest, AuditEvent and Patient rules through the
FHIR interface: the REST API's access rules, audit rows and services."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from compliance.models import AuditEvent
from patients.models import Appointment
from patients.services import patient_merge
from reminders.models import Reminder
from tests.factories import make_patient
from tests.fhir.conftest import validated

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def _post(client, url, resource, headers, method="post"):
    return getattr(client, method)(
        url, data=json.dumps(resource), content_type=FHIR_JSON, **headers
    )


def test_patient_read_is_404_outside_the_team_and_audited_as_denied(
    client, fhir_key, patient, other_patient
):
    headers = fhir_key("patients:read")
    assert client.get(f"/fhir/Patient/{patient.pk}", **headers).status_code == 200
    assert client.get(f"/fhir/Patient/{other_patient.pk}", **headers).status_code == 404
    rows = AuditEvent.objects.filter(resource_type="patient").order_by("id")
    assert [(r.outcome, r.patient_ids) for r in rows] == [
        ("success", [str(patient.pk)]),
        ("denied", [str(other_patient.pk)]),
    ]
    found = client.get("/fhir/Patient?phone=+14155550199", **headers).json()
    assert "entry" not in found  # the other team's patient is not found


def test_a_merged_patient_links_to_its_survivor(client, fhir_key, patient, north):
    duplicate = make_patient(team=north, phones=("+14155550111",))
    patient_merge(survivor=patient, duplicate=duplicate)
    body = client.get(f"/fhir/Patient?_id={duplicate.pk}", **fhir_key("patients:read")).json()
    merged = validated(body).entry[0].resource
    assert merged.link[0].type == "replaced-by"
    assert merged.link[0].other.reference == f"Patient/{patient.pk}"
    assert merged.active is False


def test_patient_search_keeps_sms_consent_on_each_number(client, fhir_key, patient):
    body = client.get(f"/fhir/Patient/{patient.pk}", **fhir_key("patients:read")).json()
    phone = body["telecom"][0]
    assert phone["extension"][0]["valueBoolean"] is True


def test_creating_an_existing_mrn_is_409_and_writes_nothing(client, fhir_key, patient):
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": settings.FHIR_MRN_SYSTEM, "value": patient.mrn}],
        "name": [{"family": "Other", "given": ["Person"]}],
    }
    response = _post(client, "/fhir/Patient", resource, fhir_key("patients:write"))
    assert response.status_code == 409
    assert validated(response.json()).issue[0].code == "conflict"


def test_communication_without_content_scope_has_no_payload(client, fhir_key, thread, patient):
    body = client.get(
        f"/fhir/Communication?patient={patient.pk}&received=ge2000-01-01",
        **fhir_key("communications:read"),
    ).json()
    bundle = validated(body)
    assert len(bundle.entry) == 3  # the three inbound texts
    assert all(e.resource.payload is None for e in bundle.entry)
    assert all(e.resource.medium[0].coding[0].code == "SMSWRIT" for e in bundle.entry)


def test_communication_search_is_404_for_another_teams_patient(client, fhir_key, other_patient):
    response = client.get(
        f"/fhir/Communication?patient=Patient/{other_patient.pk}", **fhir_key("timeline:read")
    )
    assert response.status_code == 404
    assert AuditEvent.objects.get(resource_type="timeline").outcome == "denied"


def test_appointment_upsert_by_identifier_replans_reminders_like_rest(client, fhir_key, patient):
    headers = fhir_key("appointments:write", "patients:read")
    start = (timezone.now() + timedelta(days=5)).replace(microsecond=0)
    resource = {
        "resourceType": "Appointment",
        "identifier": [{"system": "urn:scheduler", "value": "A-1"}],
        "status": "booked",
        "start": start.isoformat(),
        "minutesDuration": 20,
        "participant": [
            {"actor": {"reference": f"Patient/{patient.pk}"}, "status": "needs-action"},
            {"actor": {"display": "Dr. Who"}, "status": "accepted"},
        ],
    }
    url = "/fhir/Appointment?identifier=urn:scheduler|A-1"
    created = _post(client, url, resource, headers, method="put")
    assert created.status_code == 201, created.content
    appointment = Appointment.objects.get(source="urn:scheduler", external_id="A-1")
    planned = set(
        Reminder.objects.filter(appointment=appointment).values_list("planned_at", flat=True)
    )
    assert planned
    moved = {**resource, "start": (start + timedelta(days=1)).isoformat()}
    again = _post(client, url, moved, headers, method="put")
    assert again.status_code == 200
    assert Appointment.objects.filter(external_id="A-1").count() == 1
    replanned = set(
        Reminder.objects.filter(appointment=appointment, state="scheduled").values_list(
            "planned_at", flat=True
        )
    )
    assert replanned and replanned.isdisjoint(planned)
    read = validated(client.get(f"/fhir/Appointment/{appointment.pk}", **headers).json())
    assert read.participant[1].actor.display == "Dr. Who"
    search = client.get(
        f"/fhir/Appointment?patient=Patient/{patient.pk}&date=ge{start.date().isoformat()}",
        **headers,
    ).json()
    assert [e["resource"]["id"] for e in search["entry"]] == [str(appointment.pk)]
    reminders = validated(
        client.get(f"/fhir/CommunicationRequest?patient={patient.pk}", **headers).json()
    )
    assert reminders.entry
    assert all(
        e.resource.about[0].reference == f"Appointment/{appointment.pk}" for e in reminders.entry
    )


def test_appointment_for_another_teams_patient_is_404(client, fhir_key, other_patient):
    resource = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": timezone.now().isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{other_patient.pk}"}, "status": "accepted"}
        ],
    }
    response = _post(client, "/fhir/Appointment", resource, fhir_key("appointments:write"))
    assert response.status_code == 404
    assert not Appointment.objects.exists()


def test_audit_events_in_balp_shape_need_the_audit_scope(client, fhir_key, patient, north):
    reader = fhir_key("patients:read")
    for _ in range(2):
        client.get(f"/fhir/Patient/{patient.pk}", **reader)
    denied = client.get(f"/fhir/AuditEvent?patient={patient.pk}", **reader)
    assert denied.status_code == 403
    auditor = fhir_key("audit:read")
    body = client.get(f"/fhir/AuditEvent?patient=Patient/{patient.pk}&_count=1", **auditor).json()
    bundle = validated(body)
    event = bundle.entry[0].resource
    assert event.type.code == "rest"
    assert event.subtype[0].code == "read"
    assert event.outcome == "0"
    assert {e.what.reference for e in event.entity if e.what.reference} == {f"Patient/{patient.pk}"}
    assert event.agent[0].requestor is True
    assert any(link.relation == "next" for link in bundle.link)
    # A team-bound client reads the rows about its team's patients, not the practice's.
    own = client.get("/fhir/AuditEvent?_count=200", **auditor).json()
    assert own["entry"]
    assert all(
        {e["what"].get("reference") for e in entry["resource"]["entity"] if "what" in e}
        >= {f"Patient/{patient.pk}"}
        for entry in own["entry"]
    )
    practice_wide = fhir_key("audit:read", team=None)
    every = client.get("/fhir/AuditEvent?_count=200", **practice_wide).json()
    assert len(every["entry"]) >= 3


def test_patient_update_by_id_goes_through_the_service(client, fhir_key, patient):
    headers = fhir_key("patients:read", "patients:write")
    body = client.get(f"/fhir/Patient/{patient.pk}", **headers).json()
    body["name"] = [{"family": "Hopper", "given": ["Grace", "Brewster"]}]
    body["telecom"] = [{"system": "email", "value": "Grace@Example.org"}]
    response = _post(client, f"/fhir/Patient/{patient.pk}", body, headers, method="put")
    assert response.status_code == 200, response.content
    updated = validated(response.json())
    assert updated.name[0].given == ["Grace Brewster"]
    assert [t.value for t in updated.telecom] == ["grace@example.org"]
    wrong_id = {**body, "id": "00000000-0000-0000-0000-000000000000"}
    response = _post(client, f"/fhir/Patient/{patient.pk}", wrong_id, headers, method="put")
    assert response.status_code == 400
