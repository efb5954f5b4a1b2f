"""Reads for the compliance officer's tools.

Nothing here loads a PHI model: patients are UUIDs, and what the officer sees is
ids, staff names, codes and times, never message bodies or clinical content.
"""

from datetime import datetime

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import CharField, Count, F, OuterRef, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, JSONArray, JSONObject
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


def audit_events_only_about(*, patients):
    """Audit rows that name at least one patient, every one of them among
    `patients` (a QuerySet the caller limited by the access rule): the trail of a
    team's patients, without the rows that also name another team's. The rows are
    walked newest first by the caller's keyset; each row's named patients are
    looked up by primary key."""
    table = AuditEvent._meta.db_table
    # Compiled by Django: SELECT ... AS "pk" FROM ... (the access rule as the ORM writes it).
    inner, params = patients.values("pk").query.sql_with_params()
    if connection.vendor == "postgresql":
        named, count = f"jsonb_array_elements_text({table}.patient_ids) AS named(pid)", "jsonb"
        pid = "named.pid::uuid"
    else:  # SQLite (make run): uuids are stored as 32 hex digits
        named, count = f"json_each({table}.patient_ids) AS named", "json"
        pid = "replace(named.value, '-', '')"
    # Names from model metadata and constants; values are params.
    where = (
        f"{count}_array_length({table}.patient_ids) > 0 AND NOT EXISTS ("  # noqa: S608
        f"SELECT 1 FROM {named} WHERE NOT EXISTS ("
        f"SELECT 1 FROM ({inner}) AS visible WHERE visible.pk = {pid}))"
    )
    return AuditEvent.objects.extra(where=[where], params=list(params))  # noqa: S610 - params


def naming_patient(queryset, patient_id):
    """The audit rows of `queryset` that name the patient. On PostgreSQL `@>` on the
    jsonb array, answered by the GIN index (migration 0002). SQLite (the embedded
    default of `make run`) has no JSON containment lookup, and Django raises
    NotSupportedError for it; json_each reads the array there instead."""
    if connection.vendor == "postgresql":
        return queryset.filter(patient_ids__contains=[str(patient_id)])
    # The id is a parameter of the query.
    return queryset.extra(
        where=[
            'EXISTS (SELECT 1 FROM json_each("compliance_auditevent"."patient_ids") '
            "WHERE value = %s)"
        ],
        params=[str(patient_id)],
    )


def patient_access_report(*, patient_id, since=None, until=None):
    """Who touched this patient's record, when, what, why and with what outcome:
    the audit rows naming the patient (GIN containment on patient_ids), newest first,
    over the last six years unless told otherwise."""
    until = until or timezone.now()
    since = since or years_before(until, LOOKBACK_YEARS)
    rows = AuditEvent.objects.filter(recorded_at__gte=since, recorded_at__lt=until)
    return naming_patient(rows, patient_id).order_by("-recorded_at", "-id")


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


def access_report_rows(*, patient_id, since=None, until=None):
    """The patient access report (patient_access_report) with, per row, the path
    and channel the access came through (the request path and `via` its audit row
    recorded) and, for an access under a break-glass grant of the patient, that
    grant's id (`break_glass_grant_id`; break_glass_reasons gives the reasons):
    one query, the grant looked up per row by the break-glass access index."""
    grant = BreakGlassGrant.objects.filter(
        user_id=OuterRef("actor_user_id"),
        patient_id=patient_id,
        granted_at__lte=OuterRef("recorded_at"),
        expires_at__gt=OuterRef("recorded_at"),
    ).order_by("-granted_at")
    return patient_access_report(patient_id=patient_id, since=since, until=until).annotate(
        path=KT("details__path"),
        via=KT("details__via"),
        break_glass_grant_id=Subquery(grant.values("id")[:1]),
    )


def break_glass_reasons(*, patient_id):
    """{grant id: reason} of the patient's break-glass grants (decrypted: the
    reason is encrypted with its row's key, so it is read through the model)."""
    return {
        grant.pk: grant.reason
        for grant in BreakGlassGrant.objects.filter(patient_id=patient_id).only("id", "reason")
    }


BREAK_GLASS_ACTIVITY_SHOWN = 10


def _grant_window_events():
    """The audit rows of a grant's holder naming its patient within its window,
    as a subquery of a grant (OuterRef)."""
    return AuditEvent.objects.filter(
        actor_user_id=OuterRef("user_id"),
        recorded_at__gte=OuterRef("granted_at"),
        recorded_at__lt=OuterRef("expires_at"),
        # `patient_ids @> [the grant's patient id]`, answered by the GIN index.
        patient_ids__contains=JSONArray(Cast(OuterRef("patient_id"), CharField())),
    )


def break_glass_queue(*, reviewed=None):
    """break_glass_grants() with what was viewed during each grant: the first
    BREAK_GLASS_ACTIVITY_SHOWN audit rows of its holder naming its patient
    within its window (`viewed`, oldest first) and their count (`viewed_count`),
    as subqueries of the one query (PostgreSQL; per grant elsewhere)."""
    grants = break_glass_grants(reviewed=reviewed)
    if connection.vendor != "postgresql":
        return grants
    window = _grant_window_events()
    shown = window.order_by("recorded_at", "id").values(
        json=JSONObject(
            id=F("id"),
            recorded_at=F("recorded_at"),
            action=F("action"),
            resource_type=F("resource_type"),
            resource_id=F("resource_id"),
            outcome=F("outcome"),
            path=KT("details__path"),
        )
    )[:BREAK_GLASS_ACTIVITY_SHOWN]
    count = window.order_by().values("actor_user_id").annotate(n=Count("id")).values("n")
    return grants.annotate(viewed=ArraySubquery(shown), viewed_count=Subquery(count))


def break_glass_window_events(grant):
    """The audit rows of one grant's window (the development database's form of
    break_glass_queue's subqueries), oldest first."""
    return AuditEvent.objects.filter(
        actor_user_id=grant.user_id,
        recorded_at__gte=grant.granted_at,
        recorded_at__lt=grant.expires_at,
    ).order_by("recorded_at", "id")


def chain_last_verification():
    """The newest verification of the audit chain, from its own audit row (the
    API's bounded verification and the worker's full one both leave one)."""
    return (
        AuditEvent.objects.filter(
            resource_type="audit_chain", action=AuditEvent.Action.EXECUTE, outcome="success"
        )
        .order_by("-recorded_at", "-id")
        .values("recorded_at", "actor_username", "details")
        .first()
    )


def chain_head():
    """(position, hash) of the sealed chain's head, or None."""
    return (
        AuditEvent.objects.filter(chain_position__isnull=False)
        .order_by("-chain_position")
        .values_list("chain_position", "hash")
        .first()
    )
