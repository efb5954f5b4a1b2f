"""Demo patients for `make run`: a handful across two teams, with phones, emails
and upcoming appointments. Idempotent by MRN."""

from datetime import timedelta

from django.utils import timezone

from contactcenter.blind_index import mrn_index
from contactcenter.models import Team
from patients.models import Patient
from patients.services import ContactInput, appointment_create, patient_create

DEMO_PATIENTS = (
    ("DEMO-1001", "Maria", "Garcia", "North Clinic", "+14155550101", "maria@example.org", "es"),
    ("DEMO-1002", "James", "Smith", "North Clinic", "+14155550102", "james@example.org", "en"),
    ("DEMO-1003", "Aiko", "Tanaka", "North Clinic", "+14155550103", "", "en"),
    ("DEMO-2001", "Amara", "Okafor", "South Clinic", "+14155550201", "amara@example.org", "en"),
    ("DEMO-2002", "Lucas", "Martin", "South Clinic", "+14155550202", "", "en"),
    # A shared family line: two patients on one number.
    ("DEMO-2003", "Emma", "Martin", "South Clinic", "+14155550202", "", "en"),
)


def load_demo_patients():
    created = 0
    now = timezone.now()
    for mrn, given, family, team_name, phone, email, language in DEMO_PATIENTS:
        if Patient.objects.filter(mrn_index=mrn_index(mrn)).exists():
            continue
        patient = patient_create(
            team=Team.objects.get(name=team_name),
            mrn=mrn,
            given_name=given,
            family_name=family,
            time_zone="America/Los_Angeles",
            preferred_language=language,
            phones=[ContactInput(value=phone, preferred=True)],
            emails=[ContactInput(value=email)] if email else [],
        )
        appointment_create(
            patient=patient,
            starts_at=(now + timedelta(days=3)).replace(hour=17, minute=0, second=0, microsecond=0),
            provider_name="Dr. Rivera",
            location="Main campus, room 2",
        )
        created += 1
    return created
