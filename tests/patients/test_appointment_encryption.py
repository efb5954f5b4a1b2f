"""Where and with whom a patient is seen ties the patient to their care: an
appointment's provider and location are encrypted columns, and the migration that
made them so encrypted the rows stored before it (and decrypts them going back)."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from patients.models import Appointment
from tests.factories import TeamFactory, make_patient

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("patients", "0001_initial")
AFTER = ("patients", "0002_encrypt_appointment_provider_and_location")
PROVIDER = "Dr. Canary-3e1f, Cardiology"
LOCATION = "Oncology suite 3e1f"


def _migrate(*targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(list(targets) or executor.loader.graph.leaf_nodes())


def _stored(appointment_id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT provider_name, location FROM patients_appointment WHERE id = %s",
            [appointment_id],
        )
        return cursor.fetchone()


def _insert_plaintext(patient, *, provider, location):
    appointment_id = uuid.uuid4()
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO patients_appointment (id, patient_id, starts_at, duration_minutes, "
            "provider_name, location, status, source, external_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, 30, %s, %s, 'booked', '', '', %s, %s)",
            [appointment_id, patient.pk, now, provider, location, now, now],
        )
    return appointment_id


def test_provider_and_location_are_stored_encrypted():
    patient = make_patient(team=TeamFactory())

    appointment = Appointment.objects.create(
        patient=patient, starts_at=datetime.now(UTC), provider_name=PROVIDER, location=LOCATION
    )

    provider, location = _stored(appointment.pk)
    assert provider.startswith("v1:") and location.startswith("v1:")
    assert "3e1f" not in provider + location
    appointment = Appointment.objects.get(pk=appointment.pk)
    assert (appointment.provider_name, appointment.location) == (PROVIDER, LOCATION)


def test_the_migration_encrypts_rows_stored_in_plaintext_and_decrypts_them_going_back():
    patient = make_patient(team=TeamFactory())
    try:
        _migrate(BEFORE)
        stored_plain = _insert_plaintext(patient, provider=PROVIDER, location=LOCATION)
        stored_empty = _insert_plaintext(patient, provider="", location="")

        _migrate(AFTER)

        for appointment_id in (stored_plain, stored_empty):
            assert all(value.startswith("v1:") for value in _stored(appointment_id))
        assert "3e1f" not in "".join(_stored(stored_plain))
        encrypted = Appointment.objects.get(pk=stored_plain)
        assert (encrypted.provider_name, encrypted.location) == (PROVIDER, LOCATION)
        assert Appointment.objects.get(pk=stored_empty).provider_name == ""

        _migrate(BEFORE)
        assert _stored(stored_plain) == (PROVIDER, LOCATION)
        assert _stored(stored_empty) == ("", "")
    finally:
        _migrate()  # every app at its latest migration again
