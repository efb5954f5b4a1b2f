"""Anomaly reports: unusual volume against the user's own baseline, break-glass
access, after-hours reads."""

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from compliance.models import AnomalyFinding, AuditEvent, BreakGlassGrant
from compliance.services import anomalies_detect, practice_today
from compliance.tasks import nightly_anomaly_report
from contactcenter import roles
from tests.factories import make_staff, token_for

pytestmark = pytest.mark.django_db

DAY = date(2026, 6, 17)
ANOMALIES = "/api/v1/compliance/anomalies/"


def at(day, hour, minute=0):
    """A moment of the practice's day, in its own time zone."""
    zone = ZoneInfo(settings.PRACTICE_TIME_ZONE)
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


def seed_reads(user, day, patients, *, hour=10, outcome="success"):
    """One audit row per patient read, as the patient detail view writes them."""
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                recorded_at=at(day, hour, n % 60),
                actor_user_id=user.pk,
                actor_username=user.username,
                actor_role=roles.AGENT,
                action="read",
                outcome=outcome,
                resource_type="patient",
                resource_id=str(patient_id),
                patient_ids=[str(patient_id)],
            )
            for n, patient_id in enumerate(patients)
        ],
        batch_size=500,
    )


def seed_baseline(user, day, per_day, *, days=30):
    for back in range(1, days + 1):
        seed_reads(user, day - timedelta(days=back), [uuid.uuid4() for _ in range(per_day)])


def findings(kind):
    return {f.username: f for f in AnomalyFinding.objects.filter(kind=kind)}


def test_a_user_reading_300_records_against_a_baseline_of_20_is_flagged(db):
    bulk_reader = make_staff("bulk-reader")
    steady = make_staff("steady")
    seed_baseline(bulk_reader, DAY, 20)
    seed_baseline(steady, DAY, 20)
    seed_reads(bulk_reader, DAY, [uuid.uuid4() for _ in range(300)])
    seed_reads(steady, DAY, [uuid.uuid4() for _ in range(25)])

    anomalies_detect(day=DAY)

    volume = findings(AnomalyFinding.Kind.VOLUME)
    assert set(volume) == {"bulk-reader"}
    assert volume["bulk-reader"].count == 300
    assert volume["bulk-reader"].baseline == 20
    assert volume["bulk-reader"].user_id == bulk_reader.pk
    assert volume["bulk-reader"].details["baseline_days"] == 30


def test_volume_counts_distinct_patients_and_only_successful_reads(db):
    user = make_staff("rereader")
    seed_baseline(user, DAY, 20)
    same_patients = [uuid.uuid4() for _ in range(40)]
    for _ in range(5):
        seed_reads(user, DAY, same_patients)
    seed_reads(user, DAY, [uuid.uuid4() for _ in range(200)], outcome="denied")

    anomalies_detect(day=DAY)

    assert findings(AnomalyFinding.Kind.VOLUME) == {}


def test_a_new_user_without_a_baseline_is_flagged_only_past_the_margin(db):
    newcomer = make_staff("newcomer")
    busy_newcomer = make_staff("busy-newcomer")
    seed_reads(newcomer, DAY, [uuid.uuid4() for _ in range(50)])
    seed_reads(busy_newcomer, DAY, [uuid.uuid4() for _ in range(51)])

    anomalies_detect(day=DAY)

    assert set(findings(AnomalyFinding.Kind.VOLUME)) == {"busy-newcomer"}


def test_reads_between_20_00_and_07_00_practice_time_are_flagged_per_user(db):
    night_owl = make_staff("night-owl")
    day_worker = make_staff("day-worker")
    seed_reads(night_owl, DAY, [uuid.uuid4() for _ in range(3)], hour=22)
    seed_reads(night_owl, DAY, [uuid.uuid4() for _ in range(2)], hour=6)
    seed_reads(day_worker, DAY, [uuid.uuid4() for _ in range(10)], hour=7)
    seed_reads(day_worker, DAY, [uuid.uuid4() for _ in range(10)], hour=19)

    anomalies_detect(day=DAY)

    after_hours = findings(AnomalyFinding.Kind.AFTER_HOURS)
    assert set(after_hours) == {"night-owl"}
    assert after_hours["night-owl"].count == 5
    assert after_hours["night-owl"].details["events"] == 5


def test_every_break_glass_grant_of_the_day_is_reported(db, outsider, patient):
    BreakGlassGrant.objects.create(
        user=outsider,
        patient_id=patient.pk,
        reason="Emergency admission, unconscious patient",
        granted_at=at(DAY, 14),
        expires_at=at(DAY, 15),
    )
    BreakGlassGrant.objects.create(
        user=outsider,
        patient_id=patient.pk,
        reason="Emergency admission, the day before",
        granted_at=at(DAY - timedelta(days=1), 14),
        expires_at=at(DAY - timedelta(days=1), 15),
    )

    anomalies_detect(day=DAY)

    found = findings(AnomalyFinding.Kind.BREAK_GLASS_OUTSIDE_TEAM)
    assert set(found) == {"outsider"}
    assert found["outsider"].count == 1
    assert found["outsider"].details["patient_ids"] == [str(patient.pk)]


def test_detection_is_idempotent(db):
    user = make_staff("bulk-reader")
    seed_baseline(user, DAY, 20)
    seed_reads(user, DAY, [uuid.uuid4() for _ in range(300)], hour=23)

    first = sorted((f.kind, f.username, f.count) for f in anomalies_detect(day=DAY))
    second = sorted((f.kind, f.username, f.count) for f in anomalies_detect(day=DAY))

    assert first == second
    assert AnomalyFinding.objects.count() == 2


def test_the_nightly_task_stores_yesterdays_findings(db):
    yesterday = practice_today() - timedelta(days=1)
    user = make_staff("bulk-reader")
    seed_baseline(user, yesterday, 20)
    seed_reads(user, yesterday, [uuid.uuid4() for _ in range(300)])

    nightly_anomaly_report.apply()
    nightly_anomaly_report.apply()

    stored = AnomalyFinding.objects.get(kind=AnomalyFinding.Kind.VOLUME)
    assert (stored.day, stored.username, stored.count) == (yesterday, "bulk-reader", 300)


def test_the_endpoint_returns_the_days_findings_to_compliance(client, compliance_officer):
    user = make_staff("bulk-reader")
    seed_baseline(user, DAY, 20)
    seed_reads(user, DAY, [uuid.uuid4() for _ in range(300)])

    response = client.get(ANOMALIES, {"day": DAY.isoformat()}, **token_for(compliance_officer))

    assert response.status_code == 200
    body = response.json()
    assert body["day"] == DAY.isoformat()
    assert [(f["kind"], f["username"], f["count"], f["baseline"]) for f in body["findings"]] == [
        ("volume", "bulk-reader", 300, 20.0)
    ]
    assert AnomalyFinding.objects.filter(day=DAY).count() == 1


def test_the_endpoint_refuses_a_day_not_begun_and_is_404_to_agents(
    client, compliance_officer, member
):
    tomorrow = practice_today() + timedelta(days=2)

    refused = client.get(ANOMALIES, {"day": tomorrow.isoformat()}, **token_for(compliance_officer))
    hidden = client.get(ANOMALIES, **token_for(member))

    assert refused.status_code == 400
    assert hidden.status_code == 404
