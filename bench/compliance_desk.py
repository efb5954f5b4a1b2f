"""The compliance desk's audit search page against the API's audit list for the
same data and the same search.

Server-side time in one process through Django's test Client (middleware,
session or token, the filter, the query, the officer's own audit row, rendering),
the cases interleaved in a fresh random order every round:

  latest   GET /compliance/audit/                 vs  GET /api/v1/audit-events/
  staff    GET /compliance/audit/?staff=<id>      vs  GET /api/v1/audit-events/?actor=<id>
  patient  GET /compliance/audit/?patient=<id>    vs  GET /api/v1/audit-events/?patient=<id>
  page 2   the page's "load more" cursor          vs  the API's `next` link

Both answer 50 rows. The audit rows are inserted by one INSERT ... SELECT over
generate_series on first use (staff of 200, patients of 20,000, a request path and
`via` in the details, a year of timestamps), then reused.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_compliance \\
        .venv/bin/python bench/compliance_desk.py [--events 200000] [--rounds 100]
"""

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database, raw_connection, setup_django  # noqa: E402

STAFF = 200
PATIENTS = 20_000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


SEED_SQL = """
INSERT INTO compliance_auditevent (
    recorded_at, actor_user_id, actor_username, actor_role, api_client_name, action,
    resource_type, resource_id, patient_ids, outcome, http_status, purpose_of_use,
    user_agent, request_id, details)
SELECT now() - (%(events)s - n) * interval '1 second' * (31536000.0 / %(events)s),
       1000000 + n %% %(staff)s, 'bench.agent.' || (n %% %(staff)s), 'agent', '',
       CASE WHEN n %% 10 = 0 THEN 'update' ELSE 'read' END,
       'conversation', md5(n::text),
       jsonb_build_array(
           (substr(md5('p' || (n %% %(patients)s)), 1, 8) || '-' ||
            substr(md5('p' || (n %% %(patients)s)), 9, 4) || '-4' ||
            substr(md5('p' || (n %% %(patients)s)), 14, 3) || '-8' ||
            substr(md5('p' || (n %% %(patients)s)), 18, 3) || '-' ||
            substr(md5('p' || (n %% %(patients)s)), 21, 12))),
       CASE WHEN n %% 50 = 0 THEN 'denied' ELSE 'success' END, 200, 'TREAT',
       'bench', '',
       jsonb_build_object('path', '/conversations/' || md5(n::text) || '/',
                          'via', 'workspace', 'method', 'GET')
FROM generate_series(1, %(events)s) AS n
"""


def seed(events):
    with raw_connection(autocommit=True) as conn:
        have = conn.execute(
            "SELECT count(*) FROM compliance_auditevent WHERE user_agent = 'bench'"
        ).fetchone()[0]
        if have >= events:
            return have, False
        started = time.perf_counter()
        conn.execute(SEED_SQL, {"events": events - have, "staff": STAFF, "patients": PATIENTS})
        conn.execute("VACUUM ANALYZE compliance_auditevent")
        print(f"seeded {events - have} audit rows in {time.perf_counter() - started:.0f} s")
        return events, True


def officer():
    from django.contrib.auth import get_user_model

    from contactcenter import roles
    from contactcenter.services import staff_create

    user = get_user_model().objects.filter(username="bench.officer").first()
    return user or staff_create(username="bench.officer", role=roles.COMPLIANCE)


def clients(user):
    from django.test import Client

    from contactcenter.services import token_issue

    page = Client()
    page.force_login(user)
    api = Client(headers={"Authorization": f"Bearer {token_issue(user=user).token}"})
    return page, api


def a_patient():
    with raw_connection() as conn:
        return conn.execute(
            "SELECT patient_ids->>0 FROM compliance_auditevent WHERE user_agent = 'bench' "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]


def cases_for(page, api):
    import re

    patient = a_patient()
    first = page.get("/compliance/audit/").text
    cursor = re.search(r'hx-get="[^"]*cursor=([\w-]+)"', first).group(1)
    api_next = api.get("/api/v1/audit-events/").json()["next"]
    return [
        ("latest", (page, "/compliance/audit/"), (api, "/api/v1/audit-events/")),
        (
            "staff",
            (page, f"/compliance/audit/?staff={1000000 + 7}"),
            (api, f"/api/v1/audit-events/?actor={1000000 + 7}"),
        ),
        (
            "patient",
            (page, f"/compliance/audit/?patient={patient}"),
            (api, f"/api/v1/audit-events/?patient={patient}"),
        ),
        (
            "page 2",
            (page, f"/compliance/audit/?cursor={cursor}"),
            (api, api_next.split("testserver", 1)[1]),
        ),
    ]


def timed(client, url):
    started = time.perf_counter_ns()
    response = client.get(url)
    elapsed = (time.perf_counter_ns() - started) / 1e6
    if response.status_code != 200:
        sys.exit(f"{url} answered {response.status_code}")
    return elapsed


def rows_of(client, url):
    response = client.get(url)
    if "json" in response["Content-Type"]:
        return len(response.json()["results"])
    return response.text.count("data-audit-id=")


def main():
    args = parse_args()
    setup_django("postgres://postgres@127.0.0.1:5432/cc_bench_compliance")
    prepare_database()
    total, _ = seed(args.events)
    page, api = clients(officer())
    cases = cases_for(page, api)
    for key, (pc, purl), (ac, aurl) in cases:
        print(f"{key:8s} rows: page {rows_of(pc, purl)}, api {rows_of(ac, aurl)}")
    tasks = [(key, side) for key, *_ in cases for side in (1, 2)]
    by_key = {case[0]: case for case in cases}
    rng = random.Random(args.seed)
    samples = {task: [] for task in tasks}
    for n in range(args.warmup + args.rounds):
        rng.shuffle(tasks)
        for key, side in tasks:
            client, url = by_key[key][side]
            elapsed = timed(client, url)
            if n >= args.warmup:
                samples[(key, side)].append(elapsed)
    print(f"\n{total} audit rows, {args.rounds} rounds; medians and p95 in ms")
    print(f"{'case':8s} {'page':>8s} {'api':>8s} {'ratio':>6s} {'page p95':>9s} {'api p95':>8s}")
    for key, *_ in cases:
        p, a = samples[(key, 1)], samples[(key, 2)]
        pm, am = statistics.median(p), statistics.median(a)
        p95 = statistics.quantiles(p, n=20)[-1]
        a95 = statistics.quantiles(a, n=20)[-1]
        print(f"{key:8s} {pm:8.1f} {am:8.1f} {pm / am:6.2f} {p95:9.1f} {a95:8.1f}")
    print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
