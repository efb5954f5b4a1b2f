import pytest
from django.dispatch import receiver

from compliance.models import AuditEvent
from patients.models import Appointment, Channel, ContactPoint
from patients.services import consent_check, sms_opt_in, sms_opt_out
from patients.signals import appointment_changed
from tests.factories import make_patient, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def changes():
    seen = []

    @receiver(appointment_changed, weak=False)
    def record(appointment, change, **kwargs):
        seen.append(change)

    yield seen
    appointment_changed.disconnect(record)


def test_create_list_and_move_an_appointment(client, patient, member, changes):
    url = f"/api/v1/patients/{patient.pk}/appointments/"
    created = client.post(
        url,
        {"starts_at": "2030-03-04T14:00:00Z", "provider_name": "Dr. Who", "location": "Room 3"},
        content_type="application/json",
        **token_for(member),
    )
    appointment_id = created.json()["id"]
    moved = client.patch(
        f"/api/v1/appointments/{appointment_id}/",
        {"starts_at": "2030-03-05T14:00:00Z"},
        content_type="application/json",
        **token_for(member),
    )
    listed = client.get(url, **token_for(member))

    assert created.status_code == 201, created.json()
    assert moved.status_code == 200
    assert [a["starts_at"] for a in listed.json()["results"]] == ["2030-03-05T14:00:00Z"]
    assert changes == ["created", "moved"]


def test_outsider_cannot_list_or_create_appointments(client, patient, outsider):
    url = f"/api/v1/patients/{patient.pk}/appointments/"

    assert client.get(url, **token_for(outsider)).status_code == 404
    assert (
        client.post(
            url,
            {"starts_at": "2030-03-04T14:00:00Z"},
            content_type="application/json",
            **token_for(outsider),
        ).status_code
        == 404
    )
    assert not Appointment.objects.exists()


def test_upsert_by_external_id_is_idempotent(client, patient, api_key_headers, changes):
    headers = api_key_headers("appointments:write")
    url = "/api/v1/appointments/by-external-id/athena/A-1/"
    body = {"patient_id": str(patient.pk), "starts_at": "2030-03-04T14:00:00Z", "status": "booked"}

    first = client.put(url, body, content_type="application/json", **headers)
    again = client.put(url, body, content_type="application/json", **headers)
    moved = client.put(
        url,
        {**body, "starts_at": "2030-03-06T14:00:00Z"},
        content_type="application/json",
        **headers,
    )

    assert (first.status_code, again.status_code, moved.status_code) == (201, 200, 200)
    assert Appointment.objects.count() == 1
    assert changes == ["created", "moved"]


def test_upsert_needs_the_appointments_scope(client, patient, api_key_headers):
    response = client.put(
        "/api/v1/appointments/by-external-id/athena/A-2/",
        {"patient_id": str(patient.pk), "starts_at": "2030-03-04T14:00:00Z"},
        content_type="application/json",
        **api_key_headers("patients:read"),
    )

    assert response.status_code == 403


def test_opt_out_marks_every_patient_on_the_number_and_is_audited(north):
    parent = make_patient(team=north, phones=["+14155550177"])
    child = make_patient(team=north, phones=["(415) 555-0177"])

    changed = sms_opt_out(phone="415.555.0177", source="keyword")

    assert changed == 2
    assert (
        ContactPoint.objects.filter(sms_opted_out=True, sms_consent_source="keyword").count() == 2
    )
    assert consent_check(patient=parent, channel=Channel.SMS).reason == "opted_out"
    event = AuditEvent.objects.filter(resource_type="sms_consent").last()
    assert sorted(event.patient_ids) == sorted([str(parent.pk), str(child.pk)])
    assert event.details["change"] == "sms_opt_out"

    sms_opt_in(phone="+14155550177", source="keyword")
    assert consent_check(patient=child, channel=Channel.SMS).allowed


def test_consent_refuses_a_patient_without_a_contact_point_of_the_kind(north):
    patient = make_patient(team=north, phones=[])

    decision = consent_check(patient=patient, channel=Channel.EMAIL)

    assert (decision.allowed, decision.reason) == (False, "no_contact_point")
