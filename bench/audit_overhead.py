"""What the read audit costs on GET /api/v1/patients/{id}/.

Three variants of the same view are timed in one process, interleaved request by
request in a shuffled order, on the same seeded patients:

  A  the real PatientDetailView: request transaction, audit row, durable commit
  B  the same view class with AuditedViewMixin's dispatch bypassed: no
     transaction, no audit row
  C  A with AUDIT_READ_ASYNC_COMMIT on (the practice's opt-in): the same one
     INSERT, committed without waiting for the WAL flush
  D  A up to the INSERT: the row built and its MAC made, no statement sent

So D - B is the Python that builds the row, C - D the statement and its round
trip, and A - C the wait for the WAL flush.

C puts a number on the trade-off DESIGN.md asks to be measured and written down
(README, "Security model"); D exists only here. A read's audit row is one INSERT in
autocommit, its own transaction; with the setting on, that statement selects its
row from a set_config that turns synchronous_commit off for its own transaction:
the same one round trip, without the wait for the flush.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench \\
        .venv/bin/python bench/audit_overhead.py [--requests 2000] [--patients 2000]
"""

import argparse
import os
import random
import re
import statistics
import sys
import time
import types
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, migrate, setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench"
URLCONF_MODULE = "bench_audit_overhead_urls"
TEAM_NAME = "Bench audit overhead"
AGENT_USERNAME = "bench-audit-agent"
TARGET_RATIO = 1.10
SEED_BATCH = 250
FLOOR_COMMITS = 300
PROBE_TABLE = "bench_commit_probe"

VARIANTS = {
    "A": ("a", "audited (real view)"),
    "B": ("b", "unaudited"),
    "C": ("c", "audited, async commit opt-in"),
    "D": ("d", "audit row built, not sent"),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per variant")
    parser.add_argument("--patients", type=int, default=2000, help="patients to seed and sample")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per variant")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed")
    return parser.parse_args()


def seed(n_patients, rng):
    """Team, agent and patients are looked up by fixed names, so a second run
    reuses them and only tops up the patient count."""
    from django.db import transaction

    from contactcenter import roles
    from contactcenter.services import staff_create, team_create
    from patients.models import Patient
    from patients.services import ContactInput, patient_create

    team = team_create(name=TEAM_NAME)
    agent = staff_create(username=AGENT_USERNAME, role=roles.AGENT, teams=[team])
    existing = Patient.objects.filter(team=team).count()
    given = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]
    family = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman"]
    started = time.perf_counter()
    for start in range(existing, n_patients, SEED_BATCH):
        # One commit per batch: a commit per patient would make seeding fsync-bound.
        with transaction.atomic():
            for n in range(start, min(start + SEED_BATCH, n_patients)):
                patient_create(
                    team=team,
                    mrn=f"BENCH-{n:08d}",
                    given_name=rng.choice(given),
                    family_name=rng.choice(family),
                    time_zone="America/New_York",
                    birth_date=date(1940 + n % 70, 1 + n % 12, 1 + n % 28),
                    sex=rng.choice(["female", "male", "other", "unknown"]),
                    address={"line": [f"{100 + n} Main St"], "city": "Springfield", "state": "IL"},
                    phones=[ContactInput(value=f"+1415{rng.randint(2000000, 9999999)}")],
                    emails=[ContactInput(value=f"bench{n}@example.org")],
                )
    created = max(0, n_patients - existing)
    return team, agent, created, time.perf_counter() - started


def build_urlconf():
    """A bench-only URLconf: the three variants at paths of the same shape, so URL
    resolution costs every variant the same."""
    from django.conf import settings
    from django.urls import path
    from rest_framework.views import APIView

    from compliance import services
    from patients.views import PatientDetailView

    class UnauditedPatientDetail(PatientDetailView):
        def dispatch(self, request, *args, **kwargs):
            return APIView.dispatch(self, request, *args, **kwargs)

        def audit(self, **kwargs):
            # The mixin's get_object still reports to audit(); the bookkeeping it
            # appends to is set up by the dispatch skipped above.
            pass

    class AsyncCommitPatientDetail(PatientDetailView):
        def _write_audit(self, http_status):
            # Set on the settings object for this row only (override_settings per
            # request would time its signal receivers too).
            settings.AUDIT_READ_ASYNC_COMMIT = True
            try:
                super()._write_audit(http_status)
            finally:
                settings.AUDIT_READ_ASYNC_COMMIT = False

    class RowOnlyPatientDetail(PatientDetailView):
        def _write_audit(self, http_status):
            insert = services._insert
            services._insert = lambda row, connection, **options: 0
            try:
                super()._write_audit(http_status)
            finally:
                services._insert = insert

    views = {
        "A": PatientDetailView,
        "B": UnauditedPatientDetail,
        "C": AsyncCommitPatientDetail,
        "D": RowOnlyPatientDetail,
    }
    module = types.ModuleType(URLCONF_MODULE)
    module.urlpatterns = [
        path(f"{VARIANTS[key][0]}/api/v1/patients/<uuid:pk>/", view.as_view())
        for key, view in views.items()
    ]
    sys.modules[URLCONF_MODULE] = module
    return URLCONF_MODULE


def url_for(variant, patient_id):
    return f"/{VARIANTS[variant][0]}/api/v1/patients/{patient_id}/"


def show_settings():
    from django.db import connection

    with connection.cursor() as cursor:
        values = {}
        for name in ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay"):
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
        cursor.execute("SELECT version()")
        values["version"] = cursor.fetchone()[0].split()[1]
    return values


def commit_floor():
    """Median cost of a one-row INSERT and its COMMIT over this connection, durable
    and with synchronous_commit off, alternated commit by commit. The difference
    is what the disk's flush costs one audited read here.

    The probe is a real table of the bench database: a transaction that only
    takes a transaction id (txid_current()) writes no WAL before its commit
    record, so PostgreSQL commits it without waiting for a flush and the fsync
    would not show."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} "
            "(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        )
    samples = {"on": [], "off": []}
    for _ in range(FLOOR_COMMITS):
        for mode in samples:
            started = time.perf_counter_ns()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL synchronous_commit TO {mode}")
                cursor.execute(f"INSERT INTO {PROBE_TABLE} DEFAULT VALUES")
            samples[mode].append(time.perf_counter_ns() - started)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {PROBE_TABLE}")
    return {mode: statistics.median(values) / 1e6 for mode, values in samples.items()}


def check_same_answer(client, patient_id):
    bodies = {}
    for variant in VARIANTS:
        response = client.get(url_for(variant, patient_id))
        if response.status_code != 200:
            sys.exit(f"variant {variant} answered {response.status_code}: {response.content[:200]}")
        bodies[variant] = response.json()
    if any(body != bodies["B"] for body in bodies.values()):
        sys.exit("The variants answer different bodies; the comparison would be meaningless.")


def count_queries(client, patient_id):
    """Statements of one request per variant."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    statements = {}
    for variant in VARIANTS:
        with CaptureQueriesContext(connection) as queries:
            client.get(url_for(variant, patient_id))
        statements[variant] = [describe(query["sql"]) for query in queries.captured_queries]
    return statements


def describe(sql_text):
    """'INSERT compliance_auditevent' for an INSERT: enough to tell statements apart."""
    words = sql_text.split()
    verb = words[0].upper() if words else "?"
    table = re.search(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql_text, re.IGNORECASE)
    if verb in ("SELECT", "INSERT", "UPDATE", "DELETE") and table:
        return f"{verb} {table.group(1)}"
    return " ".join(words[:3])


def extra_statements(statements, variant):
    extra = Counter(statements[variant]) - Counter(statements["B"])
    return ", ".join(f"{name} x{n}" if n > 1 else name for name, n in extra.items()) or "none"


def run(client, patient_ids, n_requests, rng, *, tag):
    """Rounds of one request per variant in a fresh random order each round, so
    drift, checkpoints and GC pauses land on every variant alike."""
    samples = {variant: [] for variant in VARIANTS}
    order = list(VARIANTS)
    for i in range(n_requests):
        rng.shuffle(order)
        for variant in order:
            url = url_for(variant, rng.choice(patient_ids))
            headers = {"X-Request-ID": f"bench-{tag}-{variant.lower()}-{i}"}
            started = time.perf_counter_ns()
            response = client.get(url, headers=headers)
            elapsed = time.perf_counter_ns() - started
            if response.status_code != 200:
                sys.exit(f"variant {variant} answered {response.status_code} on {url}")
            samples[variant].append(elapsed)
    return samples


def audit_rows_by_variant(after_id, tag):
    from compliance.models import AuditEvent

    rows = AuditEvent.objects.filter(id__gt=after_id)
    return {
        variant: rows.filter(request_id__startswith=f"bench-{tag}-{variant.lower()}-").count()
        for variant in VARIANTS
    }


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main():
    args = parse_args()
    wall_started = time.perf_counter()
    # The staff token's limit (600 a minute) would refuse a quiet machine's 6,000
    # requests in a minute; counted per second it still reads and writes its key.
    os.environ.setdefault("THROTTLE_STAFF_TOKEN_RATE", "100000/second")
    setup_django(DEFAULT_DATABASE_URL)

    from django.conf import settings
    from django.db import connections
    from django.db.models import Max
    from django.test import Client
    from django.test.utils import override_settings

    from compliance.models import AuditEvent
    from contactcenter.services import token_issue
    from patients.selectors import patients_visible_to

    rng = random.Random(args.seed)
    db_name = settings.DATABASES["default"]["NAME"]
    created_db = ensure_database()
    migrate_started = time.perf_counter()
    migrate()
    migrate_seconds = time.perf_counter() - migrate_started
    team, agent, seeded, seed_seconds = seed(args.patients, rng)
    patient_ids = list(
        patients_visible_to(agent)
        .filter(team=team)
        .order_by("created_at", "id")
        .values_list("id", flat=True)[: args.patients]
    )
    if not patient_ids:
        sys.exit("No visible patients were seeded.")

    client = Client(headers={"Authorization": f"Bearer {token_issue(user=agent).token}"})
    pg = show_settings()
    floor = commit_floor()

    with override_settings(ROOT_URLCONF=build_urlconf()):
        check_same_answer(client, patient_ids[0])
        run(client, patient_ids, args.warmup, rng, tag="warm")
        statements = count_queries(client, patient_ids[0])
        before_id = AuditEvent.objects.aggregate(m=Max("id"))["m"] or 0
        timed_started = time.perf_counter()
        samples = run(client, patient_ids, args.requests, rng, tag="timed")
        timed_seconds = time.perf_counter() - timed_started
        rows = audit_rows_by_variant(before_id, "timed")
    connections.close_all()

    medians = {v: statistics.median(s) / 1e6 for v, s in samples.items()}
    p95s = {v: percentile(s, 95) / 1e6 for v, s in samples.items()}

    print("Audit overhead of GET /api/v1/patients/{id}/ (Django test Client, in-process)")
    print(
        f"database {db_name} ({'created' if created_db else 'reused'}); "
        f"migrate {migrate_seconds:.1f} s; patients {len(patient_ids)} "
        f"({seeded} seeded now in {seed_seconds:.1f} s); "
        f"{args.warmup} warm-up + {args.requests} timed requests per variant, interleaved"
    )
    print(
        f"PostgreSQL {pg['version']}: "
        f"synchronous_commit={pg['synchronous_commit']} fsync={pg['fsync']} "
        f"wal_sync_method={pg['wal_sync_method']} commit_delay={pg['commit_delay']}"
    )
    print(
        f"one-row INSERT + COMMIT on this machine (median of {FLOOR_COMMITS} each): "
        f"{floor['on']:.3f} ms durable, {floor['off']:.3f} ms with synchronous_commit off, "
        f"so one WAL flush costs about {floor['on'] - floor['off']:.3f} ms"
    )
    print()
    header = (
        f"{'variant':<28}{'requests':>9}{'median ms':>11}{'p95 ms':>9}"
        f"{'ratio/B':>9}{'queries/req':>13}{'audit rows/req':>16}"
    )
    print(header)
    print("-" * len(header))
    for variant, (_, label) in VARIANTS.items():
        print(
            f"{variant + ' ' + label:<28}{len(samples[variant]):>9}"
            f"{medians[variant]:>11.3f}{p95s[variant]:>9.3f}"
            f"{medians[variant] / medians['B']:>9.3f}{len(statements[variant]):>13}"
            f"{rows[variant] / len(samples[variant]):>16.3f}"
        )
    print()
    ratio_a = medians["A"] / medians["B"]
    ratio_c = medians["C"] / medians["B"]
    verdict = "MET" if ratio_a <= TARGET_RATIO else "NOT MET"
    print(
        f"target: median A / median B <= {TARGET_RATIO:.2f}; "
        f"measured {ratio_a:.3f} -> {verdict} "
        f"(A costs {medians['A'] - medians['B']:+.3f} ms over B)"
    )
    print(
        f"variant C (AUDIT_READ_ASYNC_COMMIT on, the practice's opt-in): ratio {ratio_c:.3f} "
        f"-> {'would meet' if ratio_c <= TARGET_RATIO else 'would not meet'} the target "
        f"({medians['C'] - medians['B']:+.3f} ms over B)"
    )
    print(
        f"where A's {medians['A'] - medians['B']:+.3f} ms go: building the row "
        f"{medians['D'] - medians['B']:+.3f} ms (D - B), the INSERT and its round trip "
        f"{medians['C'] - medians['D']:+.3f} ms (C - D), the WAL flush "
        f"{medians['A'] - medians['C']:+.3f} ms (A - C)"
    )
    print("queries/req is one request of each variant, BEGIN and COMMIT included;")
    print(f"  A runs, beyond B: {extra_statements(statements, 'A')}")
    print(f"  C runs, beyond B: {extra_statements(statements, 'C')}")
    print(
        f"timed phase {timed_seconds:.1f} s; whole run {time.perf_counter() - wall_started:.1f} s"
    )


if __name__ == "__main__":
    main()
