"""Writes of the compliance app: the audit trail, break-glass grants and their
review, disclosures, anomaly findings, and the retention purge.

An audit write is one plain INSERT in the caller's transaction: it reads no
other audit row and takes no lock, so concurrent requests never wait on each other
here. The hash chain is added afterwards by `compliance.chain.seal_pending`.

Callers pass ids and codes only. `details` is a small dict of identifiers and
codes (a conversation id, a rule code, a count), never names, phone numbers,
addresses, message text or free-text reasons: audit rows must hold no PHI.
"""

import functools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, router, transaction
from django.utils import timezone

from compliance import retention, selectors
from compliance.chain import row_mac
from compliance.models import (
    AnomalyFinding,
    AuditEvent,
    BreakGlassGrant,
    Disclosure,
    RetentionCheckpoint,
)
from contactcenter.client_address import client_address
from contactcenter.replica import read_alias
from contactcenter.roles import role_of

_USER_AGENT_LENGTH = AuditEvent._meta.get_field("user_agent").max_length
_REQUEST_ID_LENGTH = AuditEvent._meta.get_field("request_id").max_length
_CLIENT_NAME_LENGTH = AuditEvent._meta.get_field("api_client_name").max_length


def audit_record(*, action, **fields) -> AuditEvent:
    """Record one audit event and return it (unsealed). The fields are those of
    `_build_row`: resource_type, resource_id, patient_ids, outcome, http_status,
    purpose_of_use, actor, api_client, request, details.

    `actor` is the staff user (None or an anonymous user for none; it is not taken
    from the request, whose user may be an API key's principal); `api_client` is
    any object with `pk` and `name`; `request` is a Django or DRF request, from
    which the client address, user agent and request id are taken.
    """
    row = _build_row(action=action, **fields)
    alias = router.db_for_write(AuditEvent)
    row["id"] = _insert(row, connections[alias])
    # The instance of a stored row, as a query would load it: a later save()
    # is refused as an update rather than taken for a second insert.
    return AuditEvent.from_db(alias, _MODEL_ATTNAMES, [row.get(name) for name in _MODEL_ATTNAMES])


def audit_write(*, action, durable=True, **fields) -> None:
    """audit_record without the model instance, for the request path
    (compliance.mixins), which never reads its row back: the same row, MAC and
    INSERT, without the instance that audit_record makes of them. `durable=False`
    (a read's row, when AUDIT_READ_ASYNC_COMMIT is on) commits it without waiting
    for the WAL flush, when the row is a transaction of its own."""
    row = _build_row(action=action, **fields)
    _insert(row, connections[router.db_for_write(AuditEvent)], durable=durable)


_SEAL_COLUMNS = {"chain_position", "prev_hash", "hash", "sealed_at"}
_MODEL_ATTNAMES = [field.attname for field in AuditEvent._meta.concrete_fields]
_INSERT_FIELDS = [
    field
    for field in AuditEvent._meta.concrete_fields
    if not field.primary_key and field.name not in _SEAL_COLUMNS
]
# Character and integer columns take the value _build_row made as it is; the
# others (JSON, address, time) go through their field, whose database form
# differs per backend (psycopg's Jsonb and Inet wrappers, SQLite's text).
_PASSED_AS_IS = {"CharField", "BigIntegerField", "PositiveSmallIntegerField"}
_INSERT_CONVERTERS = [
    (field.attname, None if field.get_internal_type() in _PASSED_AS_IS else field.get_db_prep_save)
    for field in _INSERT_FIELDS
]


@functools.cache
def _insert_sql(alias, durable=True):
    """The INSERT, made once per database. Not durable: the same row selected from
    a set_config that turns synchronous_commit off for its own transaction only
    (the statement, in autocommit), so the one round trip stays one. Its values are
    cast to their columns' types, as a VALUES list would have them taken."""
    # Only quoted identifiers and types from the model's own metadata are formatted in.
    connection = connections[alias]
    quote = connection.ops.quote_name
    names = {
        "table": quote(AuditEvent._meta.db_table),
        "columns": ", ".join(quote(field.column) for field in _INSERT_FIELDS),
        "pk": quote(AuditEvent._meta.pk.column),
    }
    if durable:
        placeholders = ", ".join(["%s"] * len(_INSERT_FIELDS))
        return "INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING {pk}".format(  # noqa: S608
            placeholders=placeholders, **names
        )
    casts = ", ".join(f"%s::{field.cast_db_type(connection)}" for field in _INSERT_FIELDS)
    relaxed = (
        "INSERT INTO {table} ({columns}) SELECT {casts} "
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed "
        "RETURNING {pk}"
    )
    return relaxed.format(casts=casts, **names)


def _insert(row, connection, *, durable=True) -> int:
    """One INSERT ... RETURNING id of a row from _build_row, without the ORM's
    save machinery: an audited read pays this on every request. Only the columns
    whose database form differs from the Python value go through their field.
    A row that is not its own transaction (inside a write's, or a test's) commits
    as that transaction does: durable then, whatever was asked."""
    durable = durable or connection.vendor != "postgresql" or connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.alias, durable), _insert_values(row, connection))
        return cursor.fetchone()[0]


def _insert_values(row, connection):
    """The INSERT's parameters, in _INSERT_FIELDS' order."""
    return [
        row[name] if convert is None else convert(row[name], connection)
        for name, convert in _INSERT_CONVERTERS
    ]


def audit_record_many(
    *, events: Iterable[Mapping], actor=None, api_client=None, request=None
) -> list[AuditEvent]:
    """Record several events by one actor in one request with a single INSERT.

    Each item of `events` holds the per-event keyword arguments of `audit_record`
    (action, resource_type, resource_id, patient_ids, outcome, http_status,
    purpose_of_use, details).
    """
    built = [
        AuditEvent(**_build_row(actor=actor, api_client=api_client, request=request, **event))
        for event in events
    ]
    return AuditEvent.objects.bulk_create(built, batch_size=500)


def _build_row(
    *,
    action,
    resource_type="",
    resource_id="",
    patient_ids=(),
    outcome=AuditEvent.Outcome.SUCCESS,
    http_status=None,
    purpose_of_use=AuditEvent.PurposeOfUse.TREAT,
    actor=None,
    api_client=None,
    request=None,
    details=None,
) -> dict:
    """The row's column values by attribute name, its MAC included."""
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise TypeError("Audit details must be a dict of ids and codes.")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    row = {
        "recorded_at": timezone.now(),
        "actor_user_id": None,
        "actor_username": "",
        "actor_role": "",
        "api_client_id": None,
        "api_client_name": "",
        # Enum look-ups raise ValueError on a misspelled code instead of storing it.
        "action": AuditEvent.Action(action).value,
        "resource_type": str(resource_type),
        "resource_id": str(resource_id),
        "patient_ids": _normalise_patient_ids(patient_ids),
        "outcome": AuditEvent.Outcome(outcome).value,
        "http_status": http_status,
        "purpose_of_use": AuditEvent.PurposeOfUse(purpose_of_use).value,
        "source_ip": None,
        "user_agent": "",
        "request_id": "",
        "details": details,
    }
    if actor is not None:
        row["actor_user_id"] = actor.pk
        row["actor_username"] = actor.get_username()
        row["actor_role"] = role_of(actor)
    if api_client is not None:
        row["api_client_id"] = int(api_client.pk)
        row["api_client_name"] = str(api_client.name)[:_CLIENT_NAME_LENGTH]
    if request is not None:
        # The resolver django-axes is configured with (AXES_CLIENT_IP_CALLABLE), so
        # lockout and audit rows name the same address; called directly, as axes'
        # own helper looks the setting up and imports it again on every call.
        row["source_ip"] = client_address(request)
        row["user_agent"] = request.META.get("HTTP_USER_AGENT", "")[:_USER_AGENT_LENGTH]
        row["request_id"] = str(getattr(request, "request_id", ""))[:_REQUEST_ID_LENGTH]
    row["mac"] = row_mac(row)
    return row


def _normalise_patient_ids(patient_ids):
    # uuid.UUID rejects anything that is not a patient id (a name, or a bare
    # string iterated character by character) and gives one spelling per id, so
    # the GIN containment lookup finds every row for a patient. Ids already read
    # as UUIDs (a model's pk) need no parsing.
    return sorted(
        {
            str(patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id)))
            for patient_id in patient_ids
        }
    )


# --- Break-glass -------------------------------------------------------------------


class UnknownPatient(Exception):
    """The id names no patient."""


class AlreadyReviewed(Exception):
    """The grant has a final review; only a "needs follow-up" review is reopened."""


class SelfReview(Exception):
    """Nobody reviews their own emergency access."""


def break_glass_grant(*, user, patient_id, reason) -> BreakGlassGrant:
    """Give `user` read access to the patient for BREAK_GLASS_MINUTES.

    The access rule (compliance.access) compares expires_at with the clock in
    every query, so the access ends the moment the grant expires, with nothing to
    revoke. The caller audits the grant (purpose ETREAT)."""
    reason = reason.strip()
    if len(reason) < BreakGlassGrant.REASON_MIN_LENGTH:
        raise ValueError(
            f"A break-glass reason needs at least {BreakGlassGrant.REASON_MIN_LENGTH} characters."
        )
    if not selectors.patient_exists(patient_id=patient_id):
        raise UnknownPatient(str(patient_id))
    granted_at = timezone.now()
    return BreakGlassGrant.objects.create(
        user=user,
        patient_id=patient_id,
        reason=reason,
        granted_at=granted_at,
        expires_at=granted_at + timedelta(minutes=settings.BREAK_GLASS_MINUTES),
    )


def break_glass_review(*, grant, reviewer, outcome, comment="") -> BreakGlassGrant:
    """Record the compliance review of a grant."""
    if reviewer.pk == grant.user_id:
        raise SelfReview(str(grant.pk))
    with transaction.atomic():
        grant = BreakGlassGrant.objects.select_for_update().get(pk=grant.pk)
        reopened = grant.review_outcome == BreakGlassGrant.ReviewOutcome.NEEDS_FOLLOW_UP
        if grant.reviewed_at and not reopened:
            raise AlreadyReviewed(str(grant.pk))
        grant.reviewed_by = reviewer
        grant.reviewed_at = timezone.now()
        grant.review_outcome = BreakGlassGrant.ReviewOutcome(outcome)
        grant.review_comment = comment.strip()
        grant.save(update_fields=["reviewed_by", "reviewed_at", "review_outcome", "review_comment"])
    return grant


# --- Accounting of disclosures -----------------------------------------------------


def disclosure_create(
    *,
    patient_id,
    disclosed_at,
    recipient_name,
    description,
    purpose,
    recipient_address="",
    created_by=None,
    api_client=None,
) -> Disclosure:
    if not selectors.patient_exists(patient_id=patient_id):
        raise UnknownPatient(str(patient_id))
    return Disclosure.objects.create(
        patient_id=patient_id,
        disclosed_at=disclosed_at,
        recipient_name=recipient_name,
        recipient_address=recipient_address,
        description=description,
        purpose=purpose,
        created_by=created_by,
        api_client=api_client,
    )


# --- Anomaly reports ---------------------------------------------------------------

# A day's distinct patients read is unusual above max(3 x the user's median day,
# median + 50): the multiple catches a quiet user turning busy, the margin keeps a
# user with a tiny baseline (or none yet) from being flagged for an ordinary day.
VOLUME_MULTIPLE = 3
VOLUME_MARGIN = 50
BASELINE_DAYS = 30
AFTER_HOURS_FROM = 20
AFTER_HOURS_UNTIL = 7

# Days on which the user read nothing are not in the median: for part-time staff
# they would pull it to zero and flag every working day.
_VOLUME_SQL = """
WITH reads AS (
    SELECT e.actor_user_id AS user_id,
           e.actor_username AS username,
           (e.recorded_at AT TIME ZONE %(tz)s)::date AS local_day,
           p.patient_id
    FROM {table} AS e
    CROSS JOIN LATERAL jsonb_array_elements_text(e.patient_ids) AS p(patient_id)
    WHERE e.action = %(action)s
      AND e.outcome = %(outcome)s
      AND e.actor_user_id IS NOT NULL
      AND e.recorded_at >= %(since)s
      AND e.recorded_at < %(until)s
),
daily AS (
    SELECT user_id, local_day, max(username) AS username,
           count(DISTINCT patient_id) AS patients
    FROM reads
    GROUP BY user_id, local_day
),
baseline AS (
    SELECT user_id, count(*) AS days,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY patients) AS median
    FROM daily
    WHERE local_day < %(day)s
    GROUP BY user_id
)
SELECT d.user_id, d.username, d.patients, coalesce(b.median, 0), coalesce(b.days, 0)
FROM daily AS d
LEFT JOIN baseline AS b ON b.user_id = d.user_id
WHERE d.local_day = %(day)s
  AND d.patients > greatest(%(multiple)s * coalesce(b.median, 0),
                            coalesce(b.median, 0) + %(margin)s)
"""

_AFTER_HOURS_SQL = """
SELECT e.actor_user_id, max(e.actor_username), count(DISTINCT p.patient_id),
       count(DISTINCT e.id), min(e.recorded_at), max(e.recorded_at)
FROM {table} AS e
CROSS JOIN LATERAL jsonb_array_elements_text(e.patient_ids) AS p(patient_id)
WHERE e.action = %(action)s
  AND e.outcome = %(outcome)s
  AND e.actor_user_id IS NOT NULL
  AND e.recorded_at >= %(since)s
  AND e.recorded_at < %(until)s
  AND (extract(hour FROM e.recorded_at AT TIME ZONE %(tz)s) >= %(from_hour)s
       OR extract(hour FROM e.recorded_at AT TIME ZONE %(tz)s) < %(until_hour)s)
GROUP BY e.actor_user_id
"""


def practice_day_bounds(day: date) -> tuple[datetime, datetime]:
    """The instants the practice's calendar day starts and ends (23 or 25 hours
    long on the days clocks change)."""
    zone = ZoneInfo(settings.PRACTICE_TIME_ZONE)
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def practice_today() -> date:
    return timezone.now().astimezone(ZoneInfo(settings.PRACTICE_TIME_ZONE)).date()


def anomalies_detect(*, day: date) -> list[AnomalyFinding]:
    """Find the day's anomalies and store them in place of any stored for the day,
    so running it again (the nightly task, the endpoint) is harmless.

    Three kinds, per user: more distinct patients read than the user's baseline
    explains; break-glass grants (access outside the user's teams by construction:
    a team member needs none); patient records read between 20:00 and 07:00 in
    PRACTICE_TIME_ZONE. The first and third are SQL aggregations over the audit
    rows (jsonb_array_elements_text over patient_ids) and need PostgreSQL; on
    SQLite, the development fallback, only break-glass findings are produced.
    """
    start, end = practice_day_bounds(day)
    findings = _break_glass_findings(day=day, start=start, end=end)
    if connection.vendor == "postgresql":
        findings += _volume_findings(day=day, end=end)
        findings += _after_hours_findings(day=day, start=start, end=end)
    with transaction.atomic():
        AnomalyFinding.objects.filter(day=day).delete()
        return AnomalyFinding.objects.bulk_create(findings)


def anomaly_report(*, day: date) -> list[AnomalyFinding]:
    """The findings of a past day as stored (audit rows never change, so running
    again would find the same), or found now for a day not yet analysed or still
    under way."""
    if day < practice_today():
        stored = list(selectors.anomaly_findings(day=day))
        if stored:
            return stored
    anomalies_detect(day=day)
    # Just written to the primary: read back from it, not from a replica behind it.
    return list(selectors.anomaly_findings(day=day).using("default"))


def _read_params(**params):
    return {
        "action": AuditEvent.Action.READ.value,
        "outcome": AuditEvent.Outcome.SUCCESS.value,
        "tz": settings.PRACTICE_TIME_ZONE,
        **params,
    }


def _volume_findings(*, day, end):
    baseline_start, _ = practice_day_bounds(day - timedelta(days=BASELINE_DAYS))
    sql = _VOLUME_SQL.format(table=connection.ops.quote_name(AuditEvent._meta.db_table))
    params = _read_params(
        since=baseline_start,
        until=end,
        day=day,
        multiple=VOLUME_MULTIPLE,
        margin=VOLUME_MARGIN,
    )
    # A lag-tolerant read: on the replica inside replica_reads().
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        AnomalyFinding(
            day=day,
            kind=AnomalyFinding.Kind.VOLUME,
            user_id=user_id,
            username=username,
            count=patients,
            baseline=float(median),
            details={"baseline_days": days, "threshold_multiple": VOLUME_MULTIPLE},
        )
        for user_id, username, patients, median, days in rows
    ]


def _after_hours_findings(*, day, start, end):
    sql = _AFTER_HOURS_SQL.format(table=connection.ops.quote_name(AuditEvent._meta.db_table))
    params = _read_params(
        since=start, until=end, from_hour=AFTER_HOURS_FROM, until_hour=AFTER_HOURS_UNTIL
    )
    # A lag-tolerant read: on the replica inside replica_reads().
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        AnomalyFinding(
            day=day,
            kind=AnomalyFinding.Kind.AFTER_HOURS,
            user_id=user_id,
            username=username,
            count=patients,
            details={
                "events": events,
                "first_at": first_at.isoformat(),
                "last_at": last_at.isoformat(),
            },
        )
        for user_id, username, patients, events, first_at, last_at in rows
    ]


def _break_glass_findings(*, day, start, end):
    per_user = {}
    grants = (
        BreakGlassGrant.objects.filter(granted_at__gte=start, granted_at__lt=end)
        .select_related("user")
        .order_by("granted_at", "id")
    )
    for grant in grants:
        finding = per_user.get(grant.user_id)
        if finding is None:
            finding = per_user[grant.user_id] = AnomalyFinding(
                day=day,
                kind=AnomalyFinding.Kind.BREAK_GLASS_OUTSIDE_TEAM,
                user_id=grant.user_id,
                username=grant.user.get_username(),
                count=0,
                details={"grant_ids": [], "patient_ids": []},
            )
        finding.count += 1
        finding.details["grant_ids"].append(str(grant.pk))
        if str(grant.patient_id) not in finding.details["patient_ids"]:
            finding.details["patient_ids"].append(str(grant.patient_id))
    return list(per_user.values())


# --- Retention ---------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeCount:
    kind: str
    days: int
    cutoff: datetime
    count: int


def retention_purge(*, dry_run=False, batch_size=1000) -> list[PurgeCount]:
    """Purge, kind by kind, what is older than its retention (see
    compliance.retention), in batches of one transaction each, and leave one audit
    row with the count per kind. With dry_run, count the same rows and change
    nothing.

    Each batch commits with the kind's checkpoint, so a purge stopped half-way (a
    time limit, a deploy) resumes where it stopped and a shredded row is not
    shredded again by the next night's run."""
    kinds = retention.registered_kinds()
    unknown = sorted(set(settings.RETENTION_DAYS) - {entry.kind for entry in kinds})
    if unknown:
        raise ImproperlyConfigured(
            f"RETENTION_DAYS names kinds no app registers: {', '.join(unknown)}."
        )
    now = timezone.now()
    counts = []
    for entry in kinds:
        days = settings.RETENTION_DAYS.get(entry.kind, entry.default_days)
        cutoff = now - timedelta(days=days)
        checkpoint = RetentionCheckpoint.objects.filter(kind=entry.kind).first()
        if checkpoint is None:
            checkpoint = RetentionCheckpoint(kind=entry.kind)
        pending = _past_retention(entry, cutoff=cutoff, checkpoint=checkpoint)
        if dry_run:
            count = pending.count()
        else:
            count = _purge_in_batches(
                entry, pending, cutoff=cutoff, checkpoint=checkpoint, batch_size=batch_size
            )
        counts.append(PurgeCount(kind=entry.kind, days=days, cutoff=cutoff, count=count))
    if not dry_run:
        audit_record(
            action=AuditEvent.Action.DELETE,
            resource_type="retention_purge",
            purpose_of_use=AuditEvent.PurposeOfUse.HSYSADMIN,
            details={
                "counts": {c.kind: c.count for c in counts},
                "retention_days": {c.kind: c.days for c in counts},
            },
        )
    return counts


def _past_retention(entry, *, cutoff, checkpoint):
    date_field = entry.date_field
    rows = entry.queryset_factory().filter(**{f"{date_field}__lt": cutoff})
    if checkpoint.purged_before is not None:
        rows = rows.filter(**{f"{date_field}__gte": checkpoint.purged_before})
    if checkpoint.run_cutoff is not None:
        rows = rows.exclude(
            **{f"{date_field}__lt": checkpoint.run_cutoff, "pk__lte": checkpoint.run_after_pk}
        )
    return rows


def _purge_in_batches(entry, pending, *, cutoff, checkpoint, batch_size):
    # Keyset over the primary key: each batch query resumes where the last one
    # stopped, so the whole purge reads the table once, and it ends even though
    # shredding leaves its rows in place.
    purged = 0
    last_pk = None
    ordered = pending.order_by("pk")
    while True:
        batch = ordered if last_pk is None else ordered.filter(pk__gt=last_pk)
        pks = list(batch.values_list("pk", flat=True)[:batch_size])
        if not pks:
            break
        last_pk = pks[-1]
        with transaction.atomic():
            purged += entry.purge(pks, cutoff=cutoff)
            checkpoint.run_cutoff = cutoff
            checkpoint.run_after_pk = str(last_pk)
            checkpoint.save()
    # A longer retention than last time moves nothing back: what lies between
    # the two cutoffs was purged already.
    if checkpoint.purged_before is None or checkpoint.purged_before < cutoff:
        checkpoint.purged_before = cutoff
    checkpoint.run_cutoff = None
    checkpoint.run_after_pk = ""
    checkpoint.save()
    return purged
