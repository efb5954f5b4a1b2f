"""Bulk export ($export) at seed_synthetic's data set: rows written, seconds and
peak memory, for Group exports of increasing size, to show the memory stays flat.

Each export runs fhir.services.export_job_run in this process (the code the
worker runs), after the kick-off service recorded the job. The peak resident set
is the kernel's high-water mark (VmHWM), reset before each export through
/proc/self/clear_refs, so each figure is that export's own peak. The files are
read back and their lines counted against the manifest.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_inbox \\
        .venv/bin/python bench/fhir_export.py [--groups 3]
"""

import argparse
import sys
import time
from pathlib import Path

# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import migrate, setup_django
from bench.inbox_timeline import DEFAULT_DATABASE_URL


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=3, help="teams exported, smallest first")
    return parser.parse_args()


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL)
    import tempfile

    from django.conf import settings
    from django.db.models import Count

    from contactcenter.models import Team
    from fhir import scopes, services
    from fhir.models import ExportJob
    from patients.models import Patient
    from tests.factories import make_api_key

    migrate()
    if not Patient.objects.exists():
        sys.exit("No data: run bench/fhir_search.py (or bench/inbox_timeline.py) first.")
    settings.FHIR_EXPORT_DIR = tempfile.mkdtemp(prefix="fhir-export-bench-")
    teams = list(
        Team.objects.annotate(n=Count("patients")).filter(n__gt=0).order_by("n")[: args.groups]
    )
    _key, client = make_api_key(scopes=["patients:read", "timeline:read"])
    grant = scopes.grant_of_client(client)
    print(
        f"{'group':<24} {'patients':>9} {'resources':>10} {'seconds':>8} "
        f"{'per s':>7} {'peak RSS MiB':>13} {'above start':>12}"
    )
    for team in teams:
        job = services.export_job_start(
            client=client,
            grant=grant,
            team_id=team.pk,
            types=None,
            since=None,
            request_url=f"bench Group/{team.pk}/$export",
        )
        reset_peak()
        start_rss = _status_kib("VmRSS")
        started = time.perf_counter()
        counts = services.export_job_run(job_id=job.pk)
        seconds = time.perf_counter() - started
        peak = _status_kib("VmHWM")
        job = ExportJob.objects.get(pk=job.pk)
        for item in job.output:
            path = services.export_file_path(job, item["type"])
            with path.open("rb") as handle:
                lines = sum(1 for _ in handle)
            if lines != item["count"]:
                sys.exit(f"{path} holds {lines} lines, the manifest says {item['count']}.")
        total = sum(counts.values())
        print(
            f"{team.name:<24} {counts.get('Patient', 0):>9} {total:>10} {seconds:>8.1f} "
            f"{total / seconds:>7.0f} {peak / 1024:>13.1f} {(peak - start_rss) / 1024:>12.1f}"
        )
        print("    " + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    services.expired_exports_purge(now=ExportJob.objects.latest("expires_at").expires_at)


if __name__ == "__main__":
    main()
