"""Reads for the compliance officer's tools.

Nothing here loads a PHI model: patients are UUIDs, and what the officer sees is
ids, staff names, codes and times, never message bodies or clinical content.
"""

from datetime import datetime

from django.db import connection
from django.utils import timezone

from compliance.chain import VerificationResult, verify_chain
from compliance.models import AnomalyFinding, AuditEvent, BreakGlassGrant, Disclosure

# HIPAA keeps compliance documentation six years (45 CFR 164.316(b)(2)); an
# accounting of disclosures covers the six years before the request (164.528).
LOOKBACK_YEARS = 6
VERIFY_TIME_BUDGET_SECONDS = 10


def years_before(moment: datetime, years: int) -> datetime:
    """The same calendar moment `years` earlier (29 February becomes the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def patient_exists(*, patient_id) -> bool:
    """Whether the id names a patient, asked of the table directly: compliance
    knows patients by id and never imports or loads the PHI model."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM patients_patient WHERE id = %s", [patient_id])
        return cursor.fetchone() is not None


def audit_events():
    """Every audit row; the audit-event filters narrow it."""
    return AuditEvent.objects.all()


def patient_access_report(*, patient_id, since=None, until=None):
    """Who touched this patient's record, when, what, why and with what outcome:
    the audit rows naming the patient (GIN containment on patient_ids), newest first,
    over the last six years unless told otherwise."""
    until = until or timezone.now()
    since = since or years_before(until, LOOKBACK_YEARS)
    return AuditEvent.objects.filter(
        patient_ids__contains=[str(patient_id)], recorded_at__gte=since, recorded_at__lt=until
    ).order_by("-recorded_at", "-id")


def break_glass_grants(*, reviewed=None):
    """The review queue: every grant, or only the (un)reviewed ones."""
    grants = BreakGlassGrant.objects.select_related("user", "reviewed_by")
    if reviewed is not None:
        grants = grants.filter(reviewed_at__isnull=not reviewed)
    return grants.order_by("-granted_at", "-id")


def disclosures_of_patient(*, patient_id, now=None):
    """The accounting of disclosures: the patient's disclosures over six years."""
    since = years_before(now or timezone.now(), LOOKBACK_YEARS)
    return (
        Disclosure.objects.filter(patient_id=patient_id, disclosed_at__gte=since)
        .select_related("created_by", "api_client")
        .order_by("-disclosed_at", "-id")
    )


def anomaly_findings(*, day):
    return AnomalyFinding.objects.filter(day=day).order_by("kind", "-count", "user_id")


def audit_chain_verify() -> VerificationResult:
    """The chain verification, bounded in time so that a request never runs long;
    a result with complete=False verified the chain up to its head position."""
    return verify_chain(time_budget_seconds=VERIFY_TIME_BUDGET_SECONDS)
