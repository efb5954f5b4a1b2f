"""The KPI report for a year over the synthetic data set: rolled up against live.

On first use the script creates its own database, migrates it, loads the synthetic
data set with `bench/seed_synthetic.py` (1M interactions, 100k patients, two years)
and adds what that command leaves out and the KPIs read: call details (queue results
and waits) for inbound calls, escalations, reopened conversations, CSAT surveys and
answers, and business hours for every team (Monday to Friday, 08:00-18:00, New York).
Later runs reuse it.

Then it times, in one process on the same data:

  live      kpi_report() for the last 365 days, every day computed from the source
            rows (use_rollups=False): what the report would cost without rollups
  rollup    building the rollups of those days (what the nightly task does on its
            first run; later nights recompute 8 days)
  rolled    kpi_report() for the same year with rollups: 364 past days summed from
            the rollups, first with today computed live, then with today's closed
            quarters of an hour from the intraday rollup and the rest live; also
            through the HTTP endpoint (JSON and CSV) as an admin, and for one team
            as its supervisor
  one day   kpi_groups_compute() of today, of the year's busiest day (the most
            resolutions) and of a day a month ago; that last day also without
            sql.analytic_statements(), with the server's default planning; and
            kpi_groups_between() of the year's busiest hour

and checks that the rolled-up figures equal the live ones. Target: the year with
rollups under 500 ms (the issue asks for 300). Since "today" depends on the day
and hour the benchmark runs, it also prints the year with the 364 rolled-up days
and the year's busiest hour computed live: more than a report computes live (the
minutes since the last closed quarter of an hour), whenever it runs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_kpi \\
        .venv/bin/python bench/kpi_report.py [--runs 20] [--live-runs 2]
"""

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_kpi"
TARGET_SECONDS = 0.5
YEAR_DAYS = 365
BATCH = 5_000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed rolled-up reports")
    parser.add_argument("--live-runs", type=int, default=2, help="timed live reports")
    parser.add_argument("--seed", type=int, default=20250301)
    return parser.parse_args()


def seed(args):
    from bench.seed_synthetic import seed as seed_synthetic
    from channels_app.models import Interaction

    if Interaction.objects.exists():
        return 0.0
    started = time.perf_counter()
    seed_synthetic(
        patients=args.patients,
        interactions=args.interactions,
        seed=args.seed,
        verbosity=1,
    )
    return time.perf_counter() - started


def complete(rng):
    """What the KPIs read and seed_synthetic does not write. Runs once: call
    details are its marker."""
    from django.apps import apps
    from django.db import connection, transaction
    from django.utils import timezone

    from channels_app.models import CallDetail, Conversation, Interaction
    from contactcenter.models import Team
    from patients.models import Channel
    from reporting.models import SurveyRequest, SurveyResponse

    if CallDetail.objects.exists():
        return 0.0
    started = time.perf_counter()
    calls = Interaction.objects.filter(
        channel=Channel.VOICE,
        direction=Interaction.Direction.INBOUND,
        kind__in=[Interaction.Kind.CALL, Interaction.Kind.VOICEMAIL],
    ).values_list("pk", "kind", "occurred_at")
    details = []
    for pk, kind, occurred_at in calls.iterator(chunk_size=BATCH):
        if kind == Interaction.Kind.VOICEMAIL:
            result, wait = "voicemail", rng.choice((None, rng.randint(30, 240)))
        elif rng.random() < 0.84:
            result, wait = "answered", int(rng.lognormvariate(2.8, 0.9))
        else:
            result, wait = "abandoned", rng.randint(0, 150)
        details.append(
            CallDetail(
                interaction_id=pk,
                status="completed",
                queue_result=result,
                queue_wait_seconds=wait,
                duration_seconds=rng.randint(30, 900) if result == "answered" else None,
                answered_at=occurred_at + timedelta(seconds=wait or 0)
                if result == "answered"
                else None,
                ended_at=occurred_at + timedelta(seconds=(wait or 0) + 60),
            )
        )
    with transaction.atomic():
        for start in range(0, len(details), BATCH):
            CallDetail.objects.bulk_create(details[start : start + BATCH])

        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE channels_app_conversation SET escalated = true "
                "WHERE status = 'resolved' AND random() < 0.06"
            )

        year_ago = timezone.now() - timedelta(days=400)
        resolved = list(
            Conversation.objects.filter(status="resolved", resolved_at__gte=year_ago).values_list(
                "pk", "patient_id", "channel", "team_id", "created_at", "resolved_at"
            )
        )
        events, surveys, answers = [], [], []
        for pk, patient_id, channel, team_id, created_at, resolved_at in resolved:
            span = resolved_at - created_at
            if rng.random() < 0.03 and span > timedelta(minutes=3):
                for fraction, change in ((1 / 3, "status open → resolved"), (2 / 3, "reopened")):
                    events.append(
                        Interaction(
                            conversation_id=pk,
                            patient_id=patient_id,
                            channel=channel,
                            kind=Interaction.Kind.EVENT,
                            direction=Interaction.Direction.INTERNAL,
                            body=f"bench: {change}",
                            occurred_at=created_at + span * fraction,
                            metadata={"change": change},
                        )
                    )
            if channel != Channel.SMS or rng.random() > 0.3:
                continue
            sent_at = resolved_at + timedelta(hours=1)
            answered = rng.random() < 0.45
            survey = SurveyRequest(
                conversation_id=pk,
                patient_id=patient_id,
                team_id=team_id,
                channel=channel,
                state="answered" if answered else "sent",
                scheduled_for=sent_at,
                sent_at=sent_at,
            )
            surveys.append(survey)
            if answered:
                answers.append(
                    SurveyResponse(
                        survey=survey,
                        conversation_id=pk,
                        team_id=team_id,
                        channel=channel,
                        score=rng.choices((1, 2, 3, 4, 5), (4, 5, 11, 30, 50))[0],
                        effort_score=rng.choice((None, rng.randint(1, 5))),
                        received_at=sent_at + timedelta(minutes=rng.randint(1, 600)),
                    )
                )
        for model, rows in ((Interaction, events), (SurveyRequest, surveys)):
            for start in range(0, len(rows), BATCH):
                model.objects.bulk_create(rows[start : start + BATCH])
        for answer in answers:
            answer.survey_id = answer.survey.pk
        for start in range(0, len(answers), BATCH):
            SurveyResponse.objects.bulk_create(answers[start : start + BATCH])

        try:
            hours = apps.get_model("escalation", "BusinessHours")
        except LookupError:
            hours = None
        if hours is not None:
            weekly = {str(day): [["08:00", "18:00"]] for day in range(5)}
            for team in Team.objects.all():
                hours.objects.update_or_create(
                    team=team, defaults={"time_zone": "America/New_York", "weekly": weekly}
                )
    with connection.cursor() as cursor:
        for table in (
            "channels_app_calldetail",
            "channels_app_conversation",
            "channels_app_interaction",
            "reporting_surveyrequest",
            "reporting_surveyresponse",
        ):
            cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def timed(function, runs):
    seconds = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, seconds


def describe(seconds):
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered) * 1000:8.1f} ms   "
        f"min {ordered[0] * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms   (n={len(ordered)})"
    )


def data_summary(since, until):
    from django.db import connection

    queries = {
        "interactions": "SELECT count(*) FROM channels_app_interaction",
        "conversations": "SELECT count(*) FROM channels_app_conversation",
        "calls with details": "SELECT count(*) FROM channels_app_calldetail",
        "resolved in the year": (
            "SELECT count(*) FROM channels_app_conversation WHERE status = 'resolved' "
            "AND resolved_at >= %s AND resolved_at < %s + interval '1 day'"
        ),
        "survey answers": "SELECT count(*) FROM reporting_surveyresponse",
    }
    counts = {}
    with connection.cursor() as cursor:
        for name, query in queries.items():
            cursor.execute(query, [since, until] if "%s" in query else [])
            counts[name] = cursor.fetchone()[0]
    return counts


def resolved_on(day):
    from reporting.selectors import kpi_groups_compute

    groups = kpi_groups_compute(first_day=day, last_day=day)
    return sum(group["conversations_resolved"] for group in groups.values())


def busiest_day(since, until):
    """The local day of the year with the most resolutions: the heaviest day to
    compute live. seed_synthetic caps resolution times at "now", which piles them
    into the day it ran; on a later day, today is empty."""
    from django.db import connection

    from reporting.selectors import kpi_settings

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (resolved_at AT TIME ZONE %s)::date AS day FROM channels_app_conversation "
            "WHERE status = 'resolved' AND resolved_at >= %s AND resolved_at < %s "
            "GROUP BY day ORDER BY count(*) DESC, day LIMIT 1",
            [str(kpi_settings().time_zone), since, until + timedelta(days=1)],
        )
        return cursor.fetchone()[0]


def busiest_hour(since, until):
    """The start of the local hour of the year with the most resolutions: more than
    a report computes live once today's closed quarters of an hour are rolled up."""
    from django.db import connection

    from reporting.selectors import kpi_settings

    zone = kpi_settings().time_zone
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('hour', resolved_at AT TIME ZONE %s) AS hour, count(*) "
            "FROM channels_app_conversation "
            "WHERE status = 'resolved' AND resolved_at >= %s AND resolved_at < %s "
            "GROUP BY hour ORDER BY count(*) DESC, hour LIMIT 1",
            [str(zone), since, until + timedelta(days=1)],
        )
        hour, resolutions = cursor.fetchone()
    return hour.replace(tzinfo=zone), resolutions


def vacuum_rollups():
    """What autovacuum does after a bulk write: the benchmark deletes and rebuilds
    every rollup on each run, which leaves as many dead rows as live ones."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("reporting_kpidailyrollup", "reporting_kpirollupday"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL)
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from contactcenter import roles
    from contactcenter.models import Team
    from contactcenter.services import staff_create, token_issue
    from reporting.models import KpiDailyRollup, KpiRollupDay
    from reporting.selectors import kpi_groups_between, kpi_groups_compute, kpi_report, kpi_today
    from reporting.services import kpi_rollup_days, kpi_rollup_intraday

    rng = random.Random(args.seed)
    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    seed_seconds = seed(args)
    complete_seconds = complete(rng)

    today = kpi_today()
    since = today - timedelta(days=YEAR_DAYS - 1)
    yesterday = today - timedelta(days=1)
    print(f"database {connection.settings_dict['NAME']}; year {since} .. {today}")
    if seed_seconds:
        print(f"seeded with seed_synthetic in {seed_seconds:.0f} s")
    if complete_seconds:
        print(
            f"added calls, escalations, reopens, surveys, business hours in "
            f"{complete_seconds:.0f} s"
        )
    for name, count in data_summary(since, today).items():
        print(f"  {name:>22}: {count:,}")

    KpiDailyRollup.objects.all().delete()
    KpiRollupDay.objects.all().delete()
    report = {"since": since, "until": today}

    # Warm the caches the same way for both: one untimed live run of today.
    kpi_groups_compute(first_day=today, last_day=today)
    live, live_seconds = timed(lambda: kpi_report(**report, use_rollups=False), args.live_runs)

    started = time.perf_counter()
    for first in range(0, YEAR_DAYS - 1, 31):
        first_day = since + timedelta(days=first)
        last_day = min(first_day + timedelta(days=30), yesterday)
        kpi_rollup_days(first_day=first_day, last_day=last_day)
    rollup_seconds = time.perf_counter() - started
    vacuum_rollups()

    # As before the intraday rollup: 364 rolled-up days and all of today live.
    _, today_live_seconds = timed(lambda: kpi_report(**report), args.runs)
    # What the beat schedule does every 15 minutes: today's closed quarters.
    started = time.perf_counter()
    kpi_rollup_intraday()
    intraday_seconds = time.perf_counter() - started
    vacuum_rollups()
    rolled, rolled_seconds = timed(lambda: kpi_report(**report), args.runs)
    _, weekly_seconds = timed(lambda: kpi_report(**report, interval="week"), args.runs)
    _, past_seconds = timed(lambda: kpi_report(since=since, until=yesterday), args.runs)
    busiest = busiest_day(since, today)
    typical = today - timedelta(days=30)
    one_day = {}
    for day in dict.fromkeys((today, busiest, typical)):
        _, one_day[day] = timed(lambda day=day: kpi_groups_compute(first_day=day, last_day=day), 10)
    hour_start, hour_resolutions = busiest_hour(since, today)
    _, busiest_hour_seconds = timed(
        lambda: kpi_groups_between(start=hour_start, end=hour_start + timedelta(hours=1)), 10
    )
    # The same day with the server's default planning (prepared statements move to
    # a generic plan after five runs; JIT compiles the costly statements):
    # kpi_groups_compute() without sql.analytic_statements().
    default_planning = kpi_groups_compute.__wrapped__
    _, default_seconds = timed(lambda: default_planning(first_day=typical, last_day=typical), 10)

    same = {**rolled, "sources": None} == {**live, "sources": None}

    admin = staff_create(username="bench-kpi-admin", role=roles.ADMIN)
    admin_client = Client(headers={"Authorization": f"Bearer {token_issue(user=admin).token}"})
    query = {"since": str(since), "until": str(today)}
    response = admin_client.get("/api/v1/reports/kpis/", query)
    assert response.status_code == 200, response.content[:500]
    _, api_seconds = timed(lambda: admin_client.get("/api/v1/reports/kpis/", query), args.runs)
    _, csv_seconds = timed(
        lambda: admin_client.get("/api/v1/reports/kpis/", {**query, "format": "csv"}), args.runs
    )
    big_team = Team.objects.order_by("pk").first()
    supervisor = staff_create(
        username="bench-kpi-supervisor", role=roles.SUPERVISOR, teams=[big_team]
    )
    supervisor_client = Client(
        headers={"Authorization": f"Bearer {token_issue(user=supervisor).token}"}
    )
    _, team_seconds = timed(
        lambda: supervisor_client.get("/api/v1/reports/kpis/", query), args.runs
    )

    period = rolled["period"]
    print()
    print(
        f"year of KPIs, every team ({rolled['sources']['rolled_up_days']} days rolled up, "
        f"{rolled['sources']['partly_rolled_up_days']} in part, "
        f"{rolled['sources']['live_days']} live):"
    )
    print(f"  live, no rollups        {describe(live_seconds)}")
    print(
        f"  building the rollups    {rollup_seconds * 1000:8.0f} ms for {YEAR_DAYS - 1} days "
        f"({KpiDailyRollup.objects.count():,} rows)"
    )
    print(f"  today all live, by day  {describe(today_live_seconds)}")
    print(
        f"  intraday rollup         {intraday_seconds * 1000:8.0f} ms (today until "
        f"{rolled['sources']['rolled_up_until'] or 'nothing: the first hour'})"
    )
    print(f"  with rollups, by day    {describe(rolled_seconds)}")
    print(f"  with rollups, by week   {describe(weekly_seconds)}")
    print(f"    364 rolled-up days    {describe(past_seconds)}")
    print("  one day computed live:")
    for label, day in (("today", today), ("busiest day", busiest), ("a typical day", typical)):
        print(f"    {label:<13} {day} ({resolved_on(day):>5,} resolved) {describe(one_day[day])}")
    print(f"    a typical day, default planning     {describe(default_seconds)}")
    print(
        f"    busiest hour  {hour_start:%Y-%m-%d %H:%M} ({hour_resolutions:>5,} resolved) "
        f"{describe(busiest_hour_seconds)}"
    )
    print(f"  HTTP JSON, admin        {describe(api_seconds)}")
    print(f"  HTTP CSV, admin         {describe(csv_seconds)}")
    print(f"  HTTP JSON, supervisor   {describe(team_seconds)}")
    median = statistics.median(rolled_seconds)
    heaviest = statistics.median(past_seconds) + statistics.median(busiest_hour_seconds)
    print()
    print(
        f"speed-up with rollups: {statistics.median(live_seconds) / median:.0f}x; "
        f"rolled-up figures equal live: {'yes' if same else 'NO'}"
    )
    print(
        f"target: year with rollups under {TARGET_SECONDS * 1000:.0f} ms: "
        f"{'met' if median < TARGET_SECONDS else 'MISSED'} ({median * 1000:.0f} ms, against "
        f"{statistics.median(today_live_seconds) * 1000:.0f} ms with today all live); with the "
        f"year's busiest hour live (364 rolled-up days + that hour): "
        f"{heaviest * 1000:.0f} ms"
    )
    conversations = period["conversations"]
    print(
        f"figures: {period['calls']['offered']:,} calls offered, ASA "
        f"{period['calls']['asa_seconds']} s; {conversations['resolved']:,} resolved, FCR "
        f"{conversations['fcr_rate']}, first response median "
        f"{conversations['first_response_seconds']['median']} s; CSAT "
        f"{period['csat']['satisfied_share']} over {period['csat']['responses']:,} answers"
    )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
