"""The worker's drain rate: inbound SMS messages fully processed per second by a real
Celery worker, beside the rate at which the same worker runs a no-op task (Celery's
own floor: broker round trips, acks, the pool's hand-off), in the same run.

What runs (all on this machine):

  backlog  `--messages` inbound SMS stored by `channels_app.services.inbound_record`,
           the webhook's own write (each handed to the worker on commit: onto the
           inbound list in Redis, channels_app/inbound_queue.py), from
           `--senders` patients whose conversations are open, bodies taken in turn from
           bench/ingest.py's; `--warmup` more before them, not timed (the model and
           the caches load in each worker process)
  worker   `celery -A config worker` with the test settings on this database and a
           Redis key prefix of the bench's own, every queue an inbound message goes
           through, `--concurrency` processes (started after the backlog is queued)
  drain    messages fully processed (the escalation run of its text recorded: sentiment,
           rules, routing, understanding; and the interaction marked processed) per
           second, between the last warm-up completion and the last one, from the
           database's own timestamps
  floor    `--noop` no-op tasks (`celery.accumulate`) queued while no worker runs, then
           the same worker command: tasks per second from the first taken off the queue
           to the last acknowledged (the queue and `unacked` polled every 5 ms)

`--worker-root` runs the worker from another checkout (`git worktree add /tmp/base
main`): run this script in turns with and without it for a before figure in the same
machine state (the load average is printed beside every figure). `--profile` instead
runs the task bodies in this process on the backlog (no worker): statements and
commits per message (CaptureQueriesContext) and the top functions (cProfile).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_drain \\
    REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/worker_drain.py [--messages 600] [--concurrency 2] \\
        [--noop 2000] [--worker-root /tmp/base] [--worker-args '...'] [--profile]
"""

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from bench/: the project root is not on sys.path by itself.
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    inbound_unprocessed_since,
    prepare_database,
    setup_django,
    start_celery_worker,
    stop_process,
)
from bench.ingest import (  # noqa: E402
    BENCH_ENV,
    BODIES,
    PRACTICE_NUMBER,
    load,
    prepare,
    sender_phone,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_drain"
PREFIX = "bench-drain-"
QUEUES = ("inbound", "escalations", "outbound", "reminders", "default")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--senders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--noop", type=int, default=2000, help="no-op tasks (0: none)")
    parser.add_argument("--profile", action="store_true", help="in-process profile instead")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--worker-args",
        default="",
        help="more options for `celery worker`, e.g. '--prefetch-multiplier 4'",
    )
    parser.add_argument(
        "--worker-root",
        default=str(ROOT),
        help="the checkout whose code the worker runs (e.g. `git worktree add /tmp/base "
        "main` for a before figure; the backlog is stored by this one's code)",
    )
    return parser.parse_args()


def redis_client():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def purge():
    client = redis_client()
    for name in (*QUEUES, "unacked", "unacked_index", "unacked_mutex"):
        client.delete(PREFIX + name)
    for key in client.scan_iter(PREFIX + "inbound:*"):
        client.delete(key)


def backlog(count, senders):
    """`count` inbound SMS as the webhook stores them; their ids in order."""
    from django.db import transaction
    from django.utils import timezone

    from channels_app import services
    from channels_app.models import ChannelAccount
    from patients.models import Channel

    account = ChannelAccount.objects.get(kind=Channel.SMS, address=PRACTICE_NUMBER)
    ids = []
    for n in range(count):
        sid = "SM" + uuid.uuid4().hex
        with transaction.atomic():
            ingested = services.inbound_record(
                channel=Channel.SMS,
                account=account,
                address=sender_phone(n % senders),
                body=BODIES[n % len(BODIES)],
                provider_id=sid,
                occurred_at=timezone.now(),
                source="twilio_sms",
                raw_payload={"MessageSid": [sid]},
                metadata={"num_media": 0, "keyword": ""},
            )
        ids.append(ingested.interaction.pk)
    return ids


def worker_environment():
    environment = dict(os.environ)
    environment["CC_TEST_PREFIX"] = PREFIX
    return environment


def drain(ids, warmup, concurrency, log_dir, timeout, root, extra=()):
    from django.db.models import Min

    from channels_app.models import Interaction
    from escalation.models import EscalationRun

    total = len(ids)
    worker = start_celery_worker(
        queues=QUEUES,
        concurrency=concurrency,
        name=f"bench-drain-{os.getpid()}",
        log_path=Path(log_dir) / "worker.log",
        cwd=root,
        environment=worker_environment(),
        extra=extra,
    )
    since = Interaction.objects.filter(pk__in=ids).aggregate(first=Min("created_at"))["first"]
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            # The exact count (by id) only once every message is marked processed.
            if inbound_unprocessed_since(since) == 0:
                done = EscalationRun.objects.filter(interaction_id__in=ids, stage="text").count()
                if done >= total:
                    break
            if worker.poll() is not None:
                sys.exit(f"the worker exited with {worker.returncode}; see {log_dir}/worker.log")
            time.sleep(0.25)
    finally:
        stop_process(worker)
    times = sorted(
        EscalationRun.objects.filter(interaction_id__in=ids, stage="text").values_list(
            "created_at", flat=True
        )
    )
    marked = Interaction.objects.filter(pk__in=ids, processed_at__isnull=False).count()
    timed = times[warmup:]
    seconds = (timed[-1] - timed[0]).total_seconds() if len(timed) > 1 else 0
    return {
        "total": total,
        "done": len(times),
        "marked": marked,
        "rate": (len(timed) - 1) / seconds if seconds else 0,
        "seconds": seconds,
    }


def noop_floor(count, concurrency, log_dir, timeout, root, extra=()):
    from celery import current_app

    client = redis_client()
    queue = PREFIX + "default"
    accumulate = current_app.tasks["celery.accumulate"]
    with current_app.producer_or_acquire() as producer:
        for _ in range(count):
            accumulate.apply_async(args=[1], queue="default", producer=producer)
    assert client.llen(queue) == count, client.llen(queue)
    worker = start_celery_worker(
        queues=QUEUES,
        concurrency=concurrency,
        name=f"bench-drain-{os.getpid()}",
        log_path=Path(log_dir) / "worker.log",
        cwd=root,
        environment=worker_environment(),
        extra=extra,
    )
    started = first = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            waiting = client.llen(queue)
            now = time.monotonic()
            if first is None and waiting < count:
                first = now
            if waiting == 0 and client.hlen(PREFIX + "unacked") == 0:
                started = first
                break
            time.sleep(0.005)
    finally:
        stop_process(worker)
    if started is None:
        return None
    return count / (now - started)


def profile(ids):
    """The two task bodies in this process, as the worker runs them, on `ids`."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from channels_app import tasks as channel_tasks
    from escalation import tasks as escalation_tasks
    from escalation.models import EscalationRun

    # The task bodies run here; an escalation task the inbound one queues (when the
    # escalation's processing is a task of its own) is run here too, and the queues
    # are emptied after: what is measured is the work.
    statements, commits, elapsed = [], [], []
    profiler = cProfile.Profile()
    for interaction_id in ids:
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            profiler.enable()
            channel_tasks.inbound_process.run(str(interaction_id))
            profiler.disable()
        spent = time.perf_counter() - started
        processed = EscalationRun.objects.filter(interaction_id=interaction_id).exists()
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as more:
            profiler.enable()
            if not processed:
                escalation_tasks.process_inbound.run(str(interaction_id))
            profiler.disable()
        queries = [*queries.captured_queries, *more.captured_queries]
        elapsed.append((spent + time.perf_counter() - started) * 1000)
        statements.append(len(queries))
        commits.append(sum(1 for q in queries if q["sql"].upper().startswith("COMMIT")))
    return statements, commits, elapsed, profiler


def main():
    args = parse_args()
    setup_django(DEFAULT_DATABASE_URL, CC_TEST_PREFIX=PREFIX, **BENCH_ENV)
    prepare_database()
    prepare(args.senders)
    purge()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    print(f"load {load()}; storing {args.warmup} + {args.messages} messages ...", flush=True)
    ids = backlog(args.warmup + args.messages, args.senders)
    if args.profile:
        warm, timed = ids[: args.warmup], ids[args.warmup :]
        profile(warm)
        statements, commits, elapsed, profiler = profile(timed)
        purge()
        print(
            f"in process, {len(timed)} messages, load {load()}: "
            f"{statistics.median(elapsed):.1f} ms median a message, "
            f"{statistics.mean(statements):.1f} statements "
            f"(median {statistics.median(statements)}), "
            f"{statistics.mean(commits):.1f} commits"
        )
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(60)
        stats.print_callees("interaction_process|inbound_process")
        return
    print(
        f"draining with {args.concurrency} worker processes of {args.worker_root}, "
        f"load {load()} ...",
        flush=True,
    )
    drained = drain(
        ids,
        args.warmup,
        args.concurrency,
        log_dir,
        args.timeout,
        args.worker_root,
        args.worker_args.split(),
    )
    print(
        f"drain: {drained['done']} of {drained['total']} fully processed "
        f"({drained['marked']} marked processed), {drained['rate']:.1f} messages/s "
        f"over the last {drained['done'] - args.warmup} ({drained['seconds']:.1f} s), "
        f"load {load()}",
        flush=True,
    )
    if args.noop:
        rate = noop_floor(
            args.noop,
            args.concurrency,
            log_dir,
            args.timeout,
            args.worker_root,
            args.worker_args.split(),
        )
        print(f"no-op floor: {rate:.0f} tasks/s ({args.noop} tasks), load {load()}")
    purge()


if __name__ == "__main__":
    main()
