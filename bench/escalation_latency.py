"""How long from an inbound urgent SMS webhook to its escalation being visible.

Each sample is one message, sent only after the previous one is visible, so this is
latency, not throughput:

  t0       the signed Twilio webhook is posted (Django test Client, in this process)
  visible  the escalation row is committed, i.e. GET /api/v1/escalations/ would list
           it; polled every millisecond on this process's own connection

Between the two, real Celery workers do the work, as separate processes started by
this script on the Redis broker under a key prefix of their own (one per queue, as a
deployment runs them): `inbound` (the drain task that processes the message:
sentiment, rules, routing, SLA, the escalation row, the auto-reply record),
`escalations` (a processing that failed there, retried) and `outbound` (the
auto-reply, sent through the official twilio client to a loopback stub of Twilio's
API, tests/stubs/twilio_stub.py).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_escal \\
        .venv/bin/python bench/escalation_latency.py [--messages 100] [--pool prefork]
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    ensure_database,
    migrate,
    setup_django,
    start_celery_worker,
    stop_process,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_escal"
FRONT_DESK = "Bench escalation front desk"
CLINICAL = "Bench escalation clinical"
PRACTICE_NUMBER = "+15005550199"
MESSAGE = "I have chest pain since this morning"
QUEUES = ("inbound", "escalations", "outbound")
VISIBLE_TIMEOUT_SECONDS = 30


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100, help="timed messages")
    parser.add_argument("--warmup", type=int, default=10, help="untimed messages first")
    parser.add_argument(
        "--pool",
        choices=["prefork", "solo"],
        default="prefork",
        help="worker pool (prefork, concurrency 1, as production runs; solo as `make run`)",
    )
    return parser.parse_args()


def point_twilio_at(stub):
    """The workers send through the stub; this process signs webhooks with its token."""
    from django.conf import settings

    for name, value in (
        ("TWILIO_API_BASE_URL", stub.base_url),
        ("TWILIO_ACCOUNT_SID", stub.account_sid),
        ("TWILIO_AUTH_TOKEN", stub.auth_token),
    ):
        os.environ[name] = value
        setattr(settings, name, value)


def prepare():
    """Teams, a clinician with room, the SMS line and the shipped rules. A rerun
    reuses them and resolves what the previous run left open, so every run starts
    from the same state."""
    import importlib

    from django.apps import apps

    from channels_app.models import ChannelAccount, Conversation
    from contactcenter import roles
    from contactcenter.models import StaffProfile
    from contactcenter.services import staff_create, team_create
    from patients.models import Channel

    importlib.import_module("escalation.migrations.0002_default_rules_and_sla").add_defaults(
        apps, None
    )
    front_desk = team_create(name=FRONT_DESK)
    clinical = team_create(name=CLINICAL, is_clinical=True)
    nurse = staff_create(username="bench-escalation-nurse", role=roles.CLINICIAN, teams=[clinical])
    staff_create(username="bench-escalation-lead", role=roles.SUPERVISOR, teams=[clinical])
    StaffProfile.objects.filter(user=nurse).update(availability="available", capacity=10_000)
    ChannelAccount.objects.get_or_create(
        kind=Channel.SMS,
        address=PRACTICE_NUMBER,
        defaults={"name": "Bench line", "team": front_desk},
    )
    Conversation.objects.filter(team__in=[front_desk, clinical]).exclude(
        status=Conversation.Status.RESOLVED
    ).update(status=Conversation.Status.RESOLVED)


def start_workers(pool):
    """A worker per queue, one process each, as the docker scale profile runs them."""
    return [
        start_celery_worker(
            queues=[queue],
            concurrency=1,
            name=f"bench-{queue}",
            environment=os.environ.copy(),
            extra=("-P", pool),
        )
        for queue in QUEUES
    ]


def stop_workers(workers):
    for worker in workers:
        worker.terminate()
    for worker in workers:
        stop_process(worker, timeout=20)


def wait_for_workers(expected, timeout=60):
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= expected:
            return
    sys.exit("the workers did not answer a ping within a minute")


def forget_broker_keys(prefix):
    """The bench's own keys only: Redis is shared, never flushed."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        client.delete(key)


def post_one(client, sender):
    from django.conf import settings
    from twilio.request_validator import RequestValidator

    sid = "SM" + secrets.token_hex(16)
    params = {
        "MessageSid": sid,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "From": sender,
        "To": PRACTICE_NUMBER,
        "Body": MESSAGE,
        "NumMedia": "0",
    }
    path = "/webhooks/twilio/sms/"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        settings.PUBLIC_BASE_URL + path, params
    )
    wall = time.time()
    started = time.perf_counter()
    response = client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)
    answered = time.perf_counter()
    if response.status_code != 200:
        sys.exit(f"the webhook answered {response.status_code}")
    return sid, wall, started, answered


def milestones(sid, wall):
    """When, after the post, the inbound worker handed the message on (its processed
    mark), the escalation task began (its EscalationRun row) and wrote the escalation:
    server timestamps on this same machine, in seconds."""
    from channels_app.models import Interaction
    from escalation.models import Escalation, EscalationRun

    interaction = Interaction.objects.get(channel="sms", provider_id=sid)
    # The inbound worker marks the message after its receivers ran, which can be a
    # moment after the escalation worker committed.
    deadline = time.monotonic() + 5
    while interaction.processed_at is None and time.monotonic() < deadline:
        time.sleep(0.001)
        interaction.refresh_from_db(fields=["processed_at"])
    run_at = EscalationRun.objects.get(interaction=interaction).created_at
    created_at = Escalation.objects.filter(interaction=interaction).earliest("created_at")
    return {
        "inbound handed on": interaction.processed_at.timestamp() - wall,
        "escalation task began": run_at.timestamp() - wall,
        "escalation written": created_at.created_at.timestamp() - wall,
    }


def wait_visible(sid, started):
    from escalation.models import Escalation

    visible = Escalation.objects.filter(interaction__channel="sms", interaction__provider_id=sid)
    while not visible.exists():
        if time.perf_counter() - started > VISIBLE_TIMEOUT_SECONDS:
            sys.exit(f"no escalation for {sid} after {VISIBLE_TIMEOUT_SECONDS} s")
        time.sleep(0.001)
    return time.perf_counter()


def run(count, *, tag):
    from django.test import Client

    client = Client()
    samples = []
    for n in range(count):
        # A new sender each time: a new conversation, routed and answered like the first.
        sender = f"+1415{2_000_000 + secrets.randbelow(8_000_000)}"
        sid, wall, started, answered = post_one(client, sender)
        visible = wait_visible(sid, started)
        samples.append(
            {
                "webhook answered": answered - started,
                **milestones(sid, wall),
                "escalation visible": visible - started,
            }
        )
        if tag == "timed" and (n + 1) % 25 == 0:
            print(f"  {n + 1}/{count}", flush=True)
    return samples


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main():
    args = parse_args()
    prefix = f"bench-escalation-{os.getpid()}-"
    # Its own broker key prefix, for this process and the workers it starts.
    setup_django(DEFAULT_DATABASE_URL, CC_TEST_PREFIX=prefix)
    from django.conf import settings
    from django.db import connection

    from tests.stubs.twilio_stub import TwilioStub

    created = ensure_database()
    migrate()
    prepare()
    connection.close()
    with TwilioStub() as stub:
        point_twilio_at(stub)
        workers = start_workers(args.pool)
        try:
            wait_for_workers(len(QUEUES))
            run(args.warmup, tag="warm")
            print(f"timing {args.messages} messages, one at a time ...", flush=True)
            samples = run(args.messages, tag="timed")
            expected = args.warmup + args.messages
            deadline = time.monotonic() + 10
            while len(stub.created_messages) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            sent = len(stub.created_messages)
        finally:
            stop_workers(workers)
            forget_broker_keys(prefix)

    print()
    print("Inbound urgent SMS webhook -> escalation visible (real workers on Redis)")
    print(
        f"database {settings.DATABASES['default']['NAME']} "
        f"({'created' if created else 'reused'}); workers: {', '.join(QUEUES)}, "
        f"pool {args.pool}, concurrency 1 each; {args.warmup} warm-up + "
        f"{args.messages} timed messages; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(f"{'':<26}{'median':>9}{'p90':>9}{'p99':>9}{'min':>9}{'max':>9}   (ms)")
    for label in samples[0]:
        values = [sample[label] * 1000 for sample in samples]
        print(
            f"{label:<26}{statistics.median(values):>9.1f}{percentile(values, 90):>9.1f}"
            f"{percentile(values, 99):>9.1f}{min(values):>9.1f}{max(values):>9.1f}"
        )
    print(f"auto-replies received by the Twilio stub: {sent} of {args.warmup + args.messages}")


if __name__ == "__main__":
    main()
