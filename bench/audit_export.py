"""Peak memory of GET /api/v1/audit-events/export.csv over a million audit rows.

Seeds the audit rows once with one INSERT ... SELECT over generate_series (tagged
with their own resource type, so a second run reuses them), then streams the CSV
export through Django's test client, consuming and discarding the chunks as a
client would, and prints the process's peak resident set size (ru_maxrss) before
and after. The export is meant to stay flat: the target is a peak under 200 MB.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_export \\
        .venv/bin/python bench/audit_export.py [--rows 1000000]
"""

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_export"
RESOURCE_TYPE = "bench-export"
OFFICER_USERNAME = "bench-export-officer"
TARGET_PEAK_MB = 200
EXPORT_PATH = "/api/v1/audit-events/export.csv"

# Realistic widths: a browser user agent, a request id, a details dict of ids.
SEED_SQL = """
INSERT INTO compliance_auditevent (
    recorded_at, actor_user_id, actor_username, actor_role, api_client_id,
    api_client_name, action, resource_type, resource_id, patient_ids, outcome,
    http_status, purpose_of_use, source_ip, user_agent, request_id, details
)
SELECT now() - make_interval(secs => %(rows)s - i),
       1 + i %% 50,
       'agent-' || (1 + i %% 50),
       'agent',
       NULL,
       '',
       'read',
       %(resource_type)s,
       md5(i::text)::uuid::text,
       jsonb_build_array(md5('p' || i)::uuid::text),
       'success',
       200,
       'TREAT',
       ('10.0.' || (i %% 256) || '.' || ((i / 256) %% 256))::inet,
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
           || 'Chrome/126.0 Safari/537.36',
       md5('r' || i),
       jsonb_build_object(
           'method', 'GET',
           'path', '/api/v1/patients/' || md5('p' || i)::uuid::text || '/'
       )
FROM generate_series(%(start)s, %(rows)s) AS i
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit rows to export")
    return parser.parse_args()


def seed(rows):
    from django.db import connection

    from compliance.models import AuditEvent

    existing = AuditEvent.objects.filter(resource_type=RESOURCE_TYPE).count()
    if existing >= rows:
        return existing, 0.0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            SEED_SQL, {"rows": rows, "start": existing + 1, "resource_type": RESOURCE_TYPE}
        )
        cursor.execute("ANALYZE compliance_auditevent")
    return rows, time.perf_counter() - started


def officer_headers():
    from contactcenter import roles
    from contactcenter.services import staff_create, token_issue

    officer = staff_create(username=OFFICER_USERNAME, role=roles.COMPLIANCE)
    return {"HTTP_AUTHORIZATION": f"Bearer {token_issue(user=officer).token}"}


def peak_rss_mb():
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL)

    ensure_database()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0, interactive=False)
    total, seed_seconds = seed(args.rows)
    if seed_seconds:
        print(f"seeded {total:,} audit rows in {seed_seconds:.1f} s")
    headers = officer_headers()
    client = Client()

    before = peak_rss_mb()
    started = time.perf_counter()
    response = client.get(EXPORT_PATH, {"resource_type": RESOURCE_TYPE}, **headers)
    assert response.status_code == 200, response.content
    size = lines = chunks = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
        chunks += 1
    response.close()
    seconds = time.perf_counter() - started
    after = peak_rss_mb()

    rows = lines - 1
    print(f"exported {rows:,} rows, {size / 1e6:,.1f} MB of CSV in {chunks:,} chunks")
    print(f"time {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
    print(f"peak RSS before the export {before:.1f} MB, after {after:.1f} MB")
    print(f"peak RSS grew {after - before:.1f} MB during the export")
    verdict = "PASS" if after < TARGET_PEAK_MB else "FAIL"
    print(f"{verdict}: peak {after:.1f} MB (target under {TARGET_PEAK_MB} MB)")
    if rows != total:
        print(f"WARNING: expected {total:,} rows", file=sys.stderr)
        return 1
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
