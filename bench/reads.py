"""Reads a node serves: the patient timeline and the unified inbox as production
runs them (gunicorn, production settings, PostgreSQL, Redis), under concurrent
clients, beside `/health/` on the same server at the same concurrency.

What runs (all on this machine, started and stopped by the script):

  web     gunicorn as bench/ingest.py starts it (`--web gthread`, 4 processes of 4
          threads, as docker/start-web.sh), on `bench/seed_synthetic.py`'s data set
          (bench/inbox_timeline.py's; seeded on first use)
  client  bench/ingest.py's asyncio HTTP/1.1 client, keep-alive, in this process

Requests, interleaved per concurrency level (1, 8, 32 clients):

  timeline  GET /api/v1/patients/{id}/timeline/, first page of 50, of the patient with
            the most interactions, by an agent of their team (staff token)
  inbox     GET /api/v1/conversations/, first page of 50, by an agent of the team with
            20k open conversations
  health    GET /health/

Every read is audited as in production (one audit row each, committed durably unless
AUDIT_READ_ASYNC_COMMIT is set in this environment). The staff token's rate limit
is raised for the run: one agent here asks hundreds of times a second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_inbox \\
    REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/reads.py [--patients 100000] [--interactions 1000000] \\
        [--levels 1,8,32] [--requests 1000]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import setup_django, stop_process  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_inbox"


def parse_args():
    from bench.inbox_timeline import add_dataset_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataset_arguments(parser)
    parser.add_argument("--levels", default="1,8,32", help="concurrent clients, in order")
    parser.add_argument("--requests", type=int, default=1000, help="per kind and level above 1")
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread process")
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    args.web = "gthread"
    return args


def server_environment(log_dir):
    """bench/ingest.py's production environment, with the keys this data set was
    sealed with (the settings this process runs) instead of the ingest bench's own."""
    from django.conf import settings

    from bench.ingest import production_environment

    environment = production_environment(log_dir)
    environment.update(
        {
            "FIELD_ENCRYPTION_KEYS": settings.FIELD_ENCRYPTION_KEYS,
            "BLIND_INDEX_KEY": settings.BLIND_INDEX_KEY,
            "AUDIT_MAC_KEYS": settings.AUDIT_MAC_KEYS,
            "THROTTLE_STAFF_TOKEN_RATE": "1000000/minute",
        }
    )
    return environment


def main():
    args = parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    setup_django(DEFAULT_DATABASE_URL)
    from bench.common import prepare_database
    from bench.inbox_timeline import seed_or_reuse, subjects, vacuum_analyze
    from bench.ingest import (
        HEALTH_PATH,
        drive,
        free_port,
        http_request,
        load,
        start_web,
        summary,
    )
    from contactcenter.services import token_issue

    prepare_database()
    state, seconds = seed_or_reuse(args)
    if state == "seeded now":
        print(f"seeded in {seconds:.1f} s; VACUUM ANALYZE {vacuum_analyze():.1f} s", flush=True)
    who = subjects()

    def authorised(user, path):
        token = token_issue(user=user).token
        return http_request("GET", path, headers={"Authorization": f"Bearer {token}"})

    reads = {
        "timeline": authorised(
            who["timeline_agent"], f"/api/v1/patients/{who['patient'].pk}/timeline/"
        ),
        "inbox": authorised(who["inbox_agent"], "/api/v1/conversations/"),
        "health": http_request("GET", HEALTH_PATH),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    port = free_port()
    web = start_web(args, port, server_environment(log_dir), log_dir)
    table = []
    try:
        for kind, payload in reads.items():  # warm every process's caches
            results, _, _ = drive([payload] * 64, 8, port)
            if {status for status, _ in results} != {200}:
                sys.exit(f"{kind} answered {sorted({s for s, _ in results})}; see {log_dir}")
        for level in args.levels:
            count = args.requests if level > 1 else max(100, args.requests // 5)
            for kind, payload in reads.items():
                before = load()
                results, elapsed, _ = drive([payload] * count, level, port)
                figures = summary(results, elapsed)
                table.append((level, kind, figures, before))
                print(
                    f"  {level:>3} {kind:<9}{figures['rate']:>7.0f}/s p50 {figures['p50']:.1f} "
                    f"p99 {figures['p99']:.1f} ms {','.join(map(str, figures['statuses']))} "
                    f"load {before}",
                    flush=True,
                )
    finally:
        stop_process(web)

    print()
    print("Reads, production settings under gunicorn, beside /health/ on the same server")
    print(
        f"{who['patient_interactions']:,} interactions on the timeline's patient; "
        f"gunicorn {args.web_workers} x gthread x{args.threads} threads; "
        f"{os.cpu_count()} CPUs; logs in {log_dir}"
    )
    print(
        f"{'clients':>7} {'what':<9}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'of health':>11}  statuses  load before"
    )
    health = {level: figures["rate"] for level, kind, figures, _ in table if kind == "health"}
    for level, kind, figures, before in table:
        share = "" if kind == "health" else f"{figures['rate'] / health[level]:.2f}"
        print(
            f"{level:>7} {kind:<9}{figures['requests']:>9}{figures['rate']:>8.0f}"
            f"{figures['p50']:>9.1f}{figures['p99']:>9.1f}{share:>11}  "
            f"{','.join(map(str, figures['statuses'])):<9} {before}"
        )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
