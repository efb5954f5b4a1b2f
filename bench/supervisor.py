"""The supervisor's pages against the API for the same data: server-side time in
one process through Django's test Client (middleware, session, queries,
decryption, audit rows, template rendering), interleaved in a fresh random order
every round, for a supervisor of `seed_synthetic`'s big team:

  board      GET /supervisor/board/ (agents with load and last activity, queues,
             SLA watch in business time, escalations)
                              vs  GET /api/v1/conversations/?sort=sla_due
                                  + GET /api/v1/escalations/ + GET /api/v1/inbox/counts/
  kpis       GET /supervisor/kpis/ (the last 7 days, six SVG charts with the
             duration samples)
                              vs  GET /api/v1/reports/kpis/
  drilldown  GET /supervisor/kpis/conversations/?figure=resolved (the figure,
             its count and 50 rows)
                              vs  GET /api/v1/reports/kpis/ + GET /api/v1/conversations/

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_supervisor \\
    REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/supervisor.py [--patients 10000] [--interactions 100000] \\
        [--rounds 30]
"""

import argparse
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database, setup_django  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--big-team-open", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    return parser.parse_args()


def supervisor_of(team):
    from contactcenter import roles
    from contactcenter.services import staff_create

    return staff_create(username="bench-supervisor", role=roles.SUPERVISOR, teams=[team])


def cases_for(supervisor):
    from django.test import Client

    from contactcenter.services import token_issue

    page = Client()
    page.force_login(supervisor)
    api = Client(headers={"Authorization": f"Bearer {token_issue(user=supervisor).token}"})
    return [
        (
            "board",
            (page, ["/supervisor/board/"]),
            (
                api,
                [
                    "/api/v1/conversations/?sort=sla_due",
                    "/api/v1/escalations/",
                    "/api/v1/inbox/counts/",
                ],
            ),
        ),
        ("kpis", (page, ["/supervisor/kpis/"]), (api, ["/api/v1/reports/kpis/"])),
        (
            "drilldown",
            (page, ["/supervisor/kpis/conversations/?figure=resolved"]),
            (api, ["/api/v1/reports/kpis/", "/api/v1/conversations/"]),
        ),
    ]


def main():
    args = parse_args()
    os.environ.setdefault("CC_TEST_PREFIX", f"ccbench-{os.getpid()}-")
    setup_django("postgres://postgres@127.0.0.1:5432/cc_bench_supervisor")
    from django.conf import settings
    from django.db import connection

    from bench.inbox_timeline import percentile, seed_or_reuse, subjects, vacuum_analyze
    from bench.workspace import queries, run_pages

    prepare_database()
    how, seed_seconds = seed_or_reuse(args)
    vacuum_analyze()
    team = subjects()["big_team"]
    supervisor = supervisor_of(team)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_app_interaction")
        (n_interactions,) = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM channels_app_conversation WHERE team_id = %s "
            "AND status IN ('open', 'pending')",
            [team.pk],
        )
        (n_open,) = cursor.fetchone()
    cases = cases_for(supervisor)
    rng = random.Random(args.seed)
    run_pages(cases, args.warmup, rng)
    counts = {key: (queries(*page), queries(*api)) for key, page, api in cases}
    samples = run_pages(cases, args.rounds, rng)
    print(
        f"database {settings.DATABASES['default']['NAME']} ({how}"
        f"{f', {seed_seconds:.0f} s' if seed_seconds else ''}): "
        f"{n_interactions:,} interactions; supervisor of a team with {n_open:,} open "
        "conversations"
    )
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.rounds} interleaved rounds; "
        "server-side ms (median, p95); queries per request\n"
    )
    print(f"{'':14}{'page':>16}{'API':>16}{'page/API':>10}{'queries':>12}")
    for key, *_ in cases:
        page, api = samples[(key, "page")], samples[(key, "api")]
        ratio = statistics.median(page) / statistics.median(api)
        print(
            f"{key:14}{statistics.median(page):8.1f} {percentile(page, 95):6.1f} "
            f"{statistics.median(api):8.1f} {percentile(api, 95):6.1f} {ratio:9.2f}"
            f"{counts[key][0]:>6} /{counts[key][1]:>3}"
        )


if __name__ == "__main__":
    main()
