"""A FHIR Communication search page against the REST timeline page it translates,
for the same patient, at seed_synthetic's data set (1M interactions by default).

Both requests are timed in one process through Django's test Client (so the time
is the server's: middleware, authentication, the same selector and its keyset
statement, decryption, the audit row, and rendering: DRF serialisation for REST,
fhir.resources models validated and dumped for FHIR), with the same API key
(`timeline:read`, bound to the patient's team), interleaved in a fresh random order
every round:

  (a) GET /api/v1/patients/{id}/timeline/?page_size=50     (the baseline)
  (b) GET /fhir/Communication?patient=Patient/{id}&_count=50
  and the page of each reached by following 20 next links.

The data set is created on first use and reused after (the same as
bench/inbox_timeline.py's, so one seeded database serves both):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_inbox \\
        .venv/bin/python bench/fhir_search.py [--patients 100000] \\
        [--interactions 1000000] [--rounds 300]
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ensure_database, setup_django
from bench.inbox_timeline import (
    DEFAULT_DATABASE_URL,
    follow,
    percentile,
    seed_or_reuse,
    vacuum_analyze,
)

PAGE_SIZE = 50


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--big-team-open", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1, help="seed_synthetic's --seed")
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=30, help="untimed rounds")
    parser.add_argument("--deep-pages", type=int, default=20, help="next links followed")
    return parser.parse_args()


def busiest_patient():
    from django.db import connection

    from patients.models import Patient

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT patient_id, count(*) FROM channels_app_interaction "
            "WHERE patient_id IS NOT NULL GROUP BY patient_id ORDER BY 2 DESC LIMIT 1"
        )
        patient_id, count = cursor.fetchone()
    return Patient.objects.get(pk=patient_id), count


def fhir_follow(client, url, pages):
    for _ in range(pages):
        response = client.get(url)
        if response.status_code != 200:
            sys.exit(f"{url} answered {response.status_code}: {response.content[:200]!r}")
        links = {link["relation"]: link["url"] for link in response.json()["link"]}
        if "next" not in links:
            sys.exit(f"Ran out of pages after {url}; lower --deep-pages.")
        url = links["next"]
    return url


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL)
    from django.core.management import call_command
    from django.test import Client

    from tests.factories import make_api_key

    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    seeded, seed_seconds = seed_or_reuse(args)
    vacuum_analyze()
    patient, interactions = busiest_patient()
    key, _client = make_api_key(scopes=["timeline:read"], team=patient.team)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="localhost")
    rest_first = f"/api/v1/patients/{patient.pk}/timeline/?page_size={PAGE_SIZE}"
    fhir_first = f"/fhir/Communication?patient=Patient/{patient.pk}&_count={PAGE_SIZE}"
    rest_deep, _ = follow(client, rest_first, args.deep_pages)
    fhir_deep = fhir_follow(client, fhir_first, args.deep_pages)
    cases = {
        "REST timeline, first page": rest_first,
        "FHIR Communication, first page": fhir_first,
        f"REST timeline, page {args.deep_pages + 1}": rest_deep,
        f"FHIR Communication, page {args.deep_pages + 1}": fhir_deep,
    }
    rest_ids = [row["id"] for row in client.get(rest_first).json()["results"]]
    fhir_ids = [e["resource"]["id"] for e in client.get(fhir_first).json()["entry"]]
    if rest_ids != fhir_ids:
        sys.exit("The FHIR page does not hold the REST page's interactions.")
    rng = random.Random(7)
    samples = {label: [] for label in cases}
    order = list(cases)
    for round_number in range(args.warmup + args.rounds):
        rng.shuffle(order)
        for label in order:
            started = time.perf_counter_ns()
            response = client.get(cases[label])
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if response.status_code != 200:
                sys.exit(f"{label} answered {response.status_code}")
            if round_number >= args.warmup:
                samples[label].append(elapsed)
    print(f"data set: {seeded}" + (f" in {seed_seconds:.0f} s" if seed_seconds else ""))
    print(f"patient with the most interactions: {interactions}; pages of {PAGE_SIZE}")
    print(f"rounds: {args.rounds} (after {args.warmup} warm-up), interleaved\n")
    medians = {}
    print(f"{'request':<36} {'median ms':>10} {'p95 ms':>8}")
    for label, values in samples.items():
        medians[label] = statistics.median(values)
        print(f"{label:<36} {medians[label]:>10.2f} {percentile(values, 95):>8.2f}")
    labels = list(cases)
    print()
    for rest, fhir in ((labels[0], labels[1]), (labels[2], labels[3])):
        print(f"{fhir} / {rest}: {medians[fhir] / medians[rest]:.2f}x")


if __name__ == "__main__":
    main()
