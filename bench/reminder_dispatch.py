"""10,000 due reminders dispatched by one Celery worker to a loopback Twilio stub.

One in-process worker (solo pool, the real Redis broker under this run's key prefix)
consumes the reminders, outbound and default queues. The run:

  1  baseline: N no-op tasks queued and run by that worker, timed from the first
     publish to the last task done: what the broker and worker cost one task;
  2  reminders: N patients (bulk-seeded, each with a phone, an appointment, its
     resolved reminder conversation as planning leaves it, and one reminder due
     now) dispatched by the real beat task, reminders.tasks.dispatch_due_reminders,
     each then sent by channels_app's outbound task through the official twilio
     client to the stub; timed from queueing the dispatch task until the last
     delivery record is "sent".

It prints reminders per second and the time per reminder against the no-op task.
A reminder costs two tasks' worth of broker work (the dispatch batch's share and its
own outbound send) plus its database writes and the HTTP call.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_reminders \\
        .venv/bin/python bench/reminder_dispatch.py [--reminders 10000]

The database is created and migrated on first use; each run adds its own patients.
"""

import argparse
import itertools
import os
import secrets
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_reminders"
PRACTICE_NUMBER = "+15005550006"
SEED_BATCH = 1000
PROGRESS_EVERY_SECONDS = 30
# Zones tried in turn for one where it is now daytime, so no reminder waits for the
# end of quiet hours.
DAYTIME_ZONES = ("UTC", "Asia/Tokyo", "America/New_York", "Pacific/Honolulu")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=10_000, help="due reminders")
    parser.add_argument("--noop", type=int, default=None, help="no-op tasks (default: same)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per phase")
    return parser.parse_args()


def daytime_zone():
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    now = timezone.now()
    return next(name for name in DAYTIME_ZONES if 9 <= now.astimezone(ZoneInfo(name)).hour < 18)


def seed(count):
    """A team of this run's own, its SMS number, and count patients each with a
    reminder due now. Written in bulk: the dispatch is what is measured."""
    from django.contrib.auth.models import Permission
    from django.db import transaction
    from django.utils import timezone

    from channels_app.models import (
        ChannelAccount,
        Conversation,
        ConversationGroupObjectPermission,
        OutboundMessage,
    )
    from contactcenter.blind_index import mrn_index, phone_index
    from contactcenter.services import team_create
    from patients.models import Appointment, Channel, ContactPoint, Patient
    from reminders.models import Reminder
    from reminders.selectors import default_policy

    # A run cut short leaves due reminders and pending deliveries that would be
    # counted with this one's.
    Reminder.objects.filter(state=Reminder.State.SCHEDULED).update(
        state=Reminder.State.CANCELLED, skip_reason="bench_leftover"
    )
    OutboundMessage.objects.filter(
        state__in=(OutboundMessage.State.QUEUED, OutboundMessage.State.SENDING)
    ).update(state=OutboundMessage.State.FAILED, last_error="bench leftover")
    tag = secrets.token_hex(3)
    team = team_create(name=f"Bench reminders {tag}")
    account, _ = ChannelAccount.objects.get_or_create(
        kind=Channel.SMS, address=PRACTICE_NUMBER, defaults={"name": "Bench", "team": team}
    )
    policy = default_policy()
    view = Permission.objects.get(
        content_type__app_label="channels_app", codename="view_conversation"
    )
    zone = daytime_zone()
    now = timezone.now()
    planned_at, starts_at = now - timedelta(minutes=1), now + timedelta(days=1)
    first_phone = int(secrets.token_hex(3), 16) % 7_000_000
    for start in range(0, count, SEED_BATCH):
        patients, points, appointments, reminders, conversations = [], [], [], [], []
        for n in range(start, min(start + SEED_BATCH, count)):
            patient = Patient(
                mrn=f"BENCH-{tag}-{n}",
                mrn_index=mrn_index(f"BENCH-{tag}-{n}"),
                given_name="Ada",
                family_name="Lovelace",
                time_zone=zone,
                team=team,
            )
            phone = f"+1415{2_000_000 + (first_phone + n) % 7_000_000:07d}"
            appointment = Appointment(patient=patient, starts_at=starts_at, location="Room 2")
            patients.append(patient)
            points.append(
                ContactPoint(
                    patient=patient, kind="phone", value=phone, value_index=phone_index(phone)
                )
            )
            appointments.append(appointment)
            reminders.append(
                Reminder(
                    appointment=appointment,
                    policy=policy,
                    offset_minutes=24 * 60,
                    planned_at=planned_at,
                )
            )
            conversations.append(
                Conversation(
                    channel=Channel.SMS,
                    account=account,
                    contact_address=phone,
                    contact_index=phone_index(phone),
                    patient=patient,
                    team=team,
                    status=Conversation.Status.RESOLVED,
                    last_interaction_at=now - timedelta(days=1),
                )
            )
        with transaction.atomic():
            Patient.objects.bulk_create(patients)
            ContactPoint.objects.bulk_create(points)
            Appointment.objects.bulk_create(appointments)
            Reminder.objects.bulk_create(reminders)
            Conversation.objects.bulk_create(conversations)
            ConversationGroupObjectPermission.objects.bulk_create(
                ConversationGroupObjectPermission(
                    permission=view, group=team.group, content_object=conversation
                )
                for conversation in conversations
            )
    return team, zone


def wait_until(predicate, *, timeout, poll=0.1):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(poll)
    return time.perf_counter()


def register_noop(celery_app):
    """The baseline task: nothing but a counter the bench polls. Registered before
    the worker starts, which builds its task table then."""
    done = {"n": 0}
    lock = threading.Lock()

    @celery_app.task(name="bench.noop", ignore_result=True)
    def noop():
        with lock:
            done["n"] += 1

    return noop, done


def run_noop_baseline(noop, done, count, timeout):
    started = time.perf_counter()
    for _ in range(count):
        noop.apply_async(retry=False)
    published = time.perf_counter()
    finished = wait_until(lambda: done["n"] >= count, timeout=timeout, poll=0.02)
    return finished - started, published - started


def run_reminders(team, count, timeout):
    """Polled through the partial indexes of due reminders and pending deliveries,
    which shrink as the run goes on: a poll that joined the growing tables would
    take the CPU it measures. Earlier runs leave nothing due or pending (seed())."""
    from django.db.models import Count

    from channels_app.models import OutboundMessage
    from reminders.models import Reminder
    from reminders.tasks import dispatch_due_reminders

    pending_states = (OutboundMessage.State.QUEUED, OutboundMessage.State.SENDING)
    started = time.perf_counter()
    dispatch_due_reminders.apply_async(retry=False)
    dispatched = wait_until(
        lambda: not Reminder.objects.filter(state=Reminder.State.SCHEDULED).exists(),
        timeout=timeout,
        poll=0.25,
    )
    progress = []

    def all_sent():
        pending = OutboundMessage.objects.filter(state__in=pending_states).count()
        now = time.perf_counter()
        if not progress or now - progress[-1][0] >= PROGRESS_EVERY_SECONDS or not pending:
            progress.append((now, pending))
        return not pending

    finished = wait_until(all_sent, timeout=timeout, poll=0.25)
    # Sends per second in each interval: a rate falling as the run goes on would be
    # a cost growing with the queue or the tables, not a constant per send.
    rates = [
        round((pending_before - pending) / (at - at_before))
        for (at_before, pending_before), (at, pending) in itertools.pairwise(progress)
        if at > at_before
    ]
    ours = Reminder.objects.filter(appointment__patient__team=team)
    states = dict(ours.values_list("state").annotate(n=Count("pk")))
    sent = OutboundMessage.objects.filter(
        interaction__patient__team=team, state=OutboundMessage.State.SENT
    ).count()
    return finished - started, dispatched - started, states, rates, sent


def main():
    args = parse_args()
    noop_count = args.noop or args.reminders
    setup_django(DEFAULT_DATABASE_URL)
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings
    from django.core.management import call_command

    from config.celery import app as celery_app
    from tests.stubs.twilio_stub import TwilioStub

    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    seed_started = time.perf_counter()
    team, zone = seed(args.reminders)
    seed_seconds = time.perf_counter() - seed_started

    with TwilioStub() as stub:
        settings.TWILIO_API_BASE_URL = stub.base_url
        settings.TWILIO_ACCOUNT_SID = stub.account_sid
        settings.TWILIO_AUTH_TOKEN = stub.auth_token
        celery_app.conf.task_queues  # noqa: B018 - forces queue declaration
        celery_app.control.purge()
        noop, done = register_noop(celery_app)
        load_before = os.getloadavg()
        with start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=30,
            queues=["reminders", "outbound", "default"],
        ):
            noop_seconds, noop_publish = run_noop_baseline(noop, done, noop_count, args.timeout)
            total, dispatch, states, rates, sent = run_reminders(team, args.reminders, args.timeout)
        load_after = os.getloadavg()
        stub_messages = len(stub.created_messages)
        celery_app.control.purge()

    per_reminder = total / args.reminders
    per_noop = noop_seconds / noop_count
    print(f"seeded {args.reminders} due reminders in {seed_seconds:.1f} s (zone {zone})")
    print(
        f"no-op task baseline: {noop_count} tasks in {noop_seconds:.1f} s "
        f"(publishing {noop_publish:.1f} s): {1000 * per_noop:.2f} ms per task, "
        f"{noop_count / noop_seconds:.0f} tasks/s"
    )
    print(
        f"reminders: {args.reminders} in {total:.1f} s: "
        f"{args.reminders / total:.0f} reminders/s, {1000 * per_reminder:.2f} ms per reminder "
        f"= {per_reminder / per_noop:.1f} x a no-op task"
    )
    print(
        f"  dispatch task(s), due -> sent with delivery record queued: {dispatch:.1f} s "
        f"({1000 * dispatch / args.reminders:.2f} ms each)"
    )
    print(
        f"  outbound tasks, delivery record -> Twilio stub -> sent: {total - dispatch:.1f} s "
        f"({1000 * (total - dispatch) / args.reminders:.2f} ms each)"
    )
    print(f"  sends per second, every {PROGRESS_EVERY_SECONDS} s: {rates}")
    print(
        f"  reminder states {states}; deliveries sent {sent}; "
        f"messages the stub created: {stub_messages}"
    )
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    if stub_messages != args.reminders or sent != args.reminders:
        raise SystemExit("not one sent message per reminder")


if __name__ == "__main__":
    main()
