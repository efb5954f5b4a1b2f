import pytest
from django.dispatch import receiver

from compliance.models import AuditEvent
from contactcenter import roles
from patients.models import Appointment, ContactPoint, Patient
from patients.services import appointment_create
from patients.signals import patients_merged
from tests.factories import make_patient, make_staff, token_for

pytestmark = pytest.mark.django_db

MERGE = "/api/v1/patients/merge/"


@pytest.fixture
def supervisor(north):
    return make_staff("sup", role=roles.SUPERVISOR, teams=[north])


@pytest.fixture
def pair(north):
    survivor = make_patient(team=north, phones=["+14155550100"], mrn="S-1")
    duplicate = make_patient(
        team=north, phones=["+14155550100", "+14155550111"], emails=["dup@example.org"], mrn="D-1"
    )
    ContactPoint.objects.filter(patient=duplicate, value_index__isnull=False).filter(
        pk__in=[cp.pk for cp in duplicate.contact_points.all() if cp.value == "+14155550100"]
    ).update(sms_opted_out=True)
    appointment_create(patient=duplicate, starts_at="2030-01-01T10:00:00Z")
    return survivor, duplicate


def _merge(client, user, survivor, duplicate):
    return client.post(
        MERGE,
        {"survivor": str(survivor.pk), "duplicate": str(duplicate.pk)},
        content_type="application/json",
        **token_for(user),
    )


def test_merge_moves_contacts_and_appointments_and_keeps_opt_out(client, supervisor, pair):
    survivor, duplicate = pair

    response = _merge(client, supervisor, survivor, duplicate)

    assert response.status_code == 200, response.json()
    phones = {p["value"]: p for p in response.json()["phones"]}
    assert set(phones) == {"+14155550100", "+14155550111"}
    assert phones["+14155550100"]["sms_opted_out"] is True
    assert [e["value"] for e in response.json()["emails"]] == ["dup@example.org"]
    assert Appointment.objects.get().patient_id == survivor.pk
    duplicate.refresh_from_db()
    assert duplicate.merged_into_id == survivor.pk
    assert duplicate.active is False
    event = AuditEvent.objects.filter(resource_type="patient_merge", outcome="success").last()
    assert sorted(event.patient_ids) == sorted([str(survivor.pk), str(duplicate.pk)])


def test_reading_a_merged_duplicate_answers_with_a_pointer(client, supervisor, pair):
    survivor, duplicate = pair
    _merge(client, supervisor, survivor, duplicate)

    response = client.get(f"/api/v1/patients/{duplicate.pk}/", **token_for(supervisor))

    assert response.status_code == 200
    assert response.json()["merged_into"] == str(survivor.pk)


def test_merge_is_atomic_when_a_step_fails(client, supervisor, pair):
    survivor, duplicate = pair

    @receiver(patients_merged, weak=False)
    def fail(**kwargs):
        raise RuntimeError("conversation move failed")

    try:
        with pytest.raises(RuntimeError):
            client.post(
                MERGE,
                {"survivor": str(survivor.pk), "duplicate": str(duplicate.pk)},
                content_type="application/json",
                **token_for(supervisor),
            )
    finally:
        patients_merged.disconnect(fail)

    duplicate.refresh_from_db()
    assert duplicate.merged_into_id is None
    assert duplicate.contact_points.count() == 3
    assert Appointment.objects.get().patient_id == duplicate.pk
    assert AuditEvent.objects.filter(resource_type="patient_merge", outcome="error").exists()


def test_merge_across_a_team_the_caller_cannot_see_is_refused(client, supervisor, north, south):
    survivor = make_patient(team=north)
    foreign = make_patient(team=south)

    response = _merge(client, supervisor, survivor, foreign)

    assert response.status_code == 404
    assert Patient.objects.get(pk=foreign.pk).merged_into_id is None


def test_agents_cannot_merge(client, member, pair):
    survivor, duplicate = pair

    assert _merge(client, member, survivor, duplicate).status_code == 403


def test_merge_into_itself_is_a_conflict(client, supervisor, pair):
    survivor, _ = pair

    response = _merge(client, supervisor, survivor, survivor)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "merge_same_patient"
