"""What understanding adds to the processing of one inbound message in the worker.

The escalation worker's service, escalation.services.interaction_process (sentiment,
rules, routing, SLA, in its transaction), is timed per message on this machine's
PostgreSQL, interleaved:

  A  with understanding connected: before the rules, the intent model and the
     language detector run and the decision is stored; after the commit, the
     follow-up reads the routes and decides (one route and one self-service answer
     are configured, so the lookups are real);
  B  the same service with understanding's receivers disconnected: the baseline.

Messages are the held-out evaluation texts, each stored as a fresh SMS conversation;
every message is processed once. Prints the medians of A and B, their difference
(what understanding adds, its database writes and actions included), and the
classification alone (intent model and language detection, pure CPU).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_understanding \\
        .venv/bin/python bench/understanding_worker.py [--messages 400]
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_understanding"


def setup_django():
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["DJANGO_SETTINGS_MODULE"] = "contactcenter.settings.test"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed(count):
    from django.utils import timezone

    from channels_app.models import ChannelAccount
    from channels_app.services import conversation_open, inbound_record, normalise_address
    from tests.factories import TeamFactory
    from understanding.models import IntentRoute, SelfServiceAnswer
    from understanding.training.dataset import heldout_set

    run = secrets.token_hex(4)
    desk = TeamFactory(name=f"Desk {run}")
    billing = TeamFactory(name=f"Billing {run}")
    IntentRoute.objects.update_or_create(
        intent="billing", defaults={"team": billing, "min_confidence": 0.7}
    )
    SelfServiceAnswer.objects.update_or_create(
        topic="hours",
        language="en",
        defaults={"keywords": "open, close, hours", "body": "Open 8 to 6."},
    )
    account = ChannelAccount.objects.create(
        kind="sms", name=f"Line {run}", address=f"+1500555{run[:4]}", team=desk
    )
    texts = [text for text, _intent, _lang in heldout_set()]
    interactions = []
    for n in range(count):
        address = f"+1415555{n:04d}"
        _normalised, index = normalise_address("sms", address)
        conversation = conversation_open(
            channel="sms",
            team=desk,
            account=account,
            contact_address=address,
            contact_index=index,
            occurred_at=timezone.now(),
        )
        interactions.append(
            inbound_record(
                channel="sms",
                account=account,
                address=address,
                body=texts[n % len(texts)],
                provider_id="",
                occurred_at=timezone.now(),
                source="bench",
                raw_payload={},
                conversation=conversation,
            ).interaction.pk
        )
    return interactions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per side")
    args = parser.parse_args()
    setup_django()
    from django.core.management import call_command

    from bench.audit_overhead import ensure_database

    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)

    from escalation.services import interaction_process
    from escalation.signals import inbound_analysing, inbound_processed
    from understanding import receivers
    from understanding.classifier import classify
    from understanding.language import detect
    from understanding.training.dataset import heldout_set

    interactions = seed(args.messages * 2)
    classify("warm up")  # the model loads once per worker process
    interaction_process(interaction_id=interactions.pop())
    with_understanding, without = [], []
    for n, interaction_id in enumerate(interactions):
        connected = n % 2 == 0
        if not connected:
            inbound_analysing.disconnect(receivers.analyse_inbound)
            inbound_processed.disconnect(receivers.follow_up_inbound)
        started = time.perf_counter()
        interaction_process(interaction_id=interaction_id)
        elapsed = (time.perf_counter() - started) * 1000
        if not connected:
            inbound_analysing.connect(receivers.analyse_inbound)
            inbound_processed.connect(receivers.follow_up_inbound)
        (with_understanding if connected else without).append(elapsed)

    texts = [text for text, _intent, _lang in heldout_set()]
    model, classification = [], []
    for text in texts * 3:
        started = time.perf_counter()
        classify(text)
        middle = time.perf_counter()
        detect(text)
        ended = time.perf_counter()
        model.append((middle - started) * 1000)
        classification.append((ended - started) * 1000)

    a, b = statistics.median(with_understanding), statistics.median(without)
    out = sys.stdout
    out.write(f"messages per side: {len(with_understanding)} / {len(without)}\n")
    out.write(f"A  interaction_process with understanding:    median {a:.2f} ms\n")
    out.write(f"B  interaction_process without (baseline):    median {b:.2f} ms\n")
    out.write(f"understanding adds {a - b:.2f} ms per message (A/B {a / b:.2f}x)\n")
    out.write(
        f"classification (intent model and language detection): median "
        f"{statistics.median(classification):.3f} ms, the model alone "
        f"{statistics.median(model):.3f} ms\n"
    )
    out.write(
        "the rest of the difference is understanding's database work: storing the "
        "decision and the language, then the follow-up's reads and its action\n"
    )


if __name__ == "__main__":
    main()
