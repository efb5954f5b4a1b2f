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
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# The practice's self-service answers in the run: topic, language, keywords.
ANSWERS = [
    ("hours", "en", "open, close, hours, saturday, sunday, holidays, evening, lunch"),
    ("address", "en", "address, located, location, directions, entrance, floor, get to"),
    ("parking", "en", "park, parking, garage"),
    ("fax", "en", "fax"),
    ("portal", "en", "portal, password, log in, login, account"),
    ("phone", "en", "phone number, number do i call, call to reach"),
    ("hours", "es", "abren, cierran, horario, sabado, domingo, festivo, noche"),
    ("address", "es", "direccion, queda, llego, entrada, piso"),
    ("parking", "es", "estaciono, estacionamiento, garaje"),
    ("fax", "es", "fax"),
    ("portal", "es", "portal, contrasena, cuenta"),
    ("phone", "es", "telefono, numero llamo"),
]


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
    clinical = TeamFactory(name=f"Clinical {run}", is_clinical=True)
    IntentRoute.objects.update_or_create(
        intent="billing", defaults={"team": billing, "min_confidence": 0.7}
    )
    for intent in ("clinical_question", "test_results", "refill"):
        IntentRoute.objects.update_or_create(
            intent=intent, defaults={"team": clinical, "min_confidence": 0.5}
        )
    for topic, language, keywords in ANSWERS:
        SelfServiceAnswer.objects.update_or_create(
            topic=topic,
            language=language,
            defaults={"keywords": keywords, "body": f"({topic} answer)"},
        )
    account = ChannelAccount.objects.create(
        kind="sms", name=f"Line {run}", address=f"+1500555{run[:4]}", team=desk
    )
    rows = heldout_set()
    texts = [text for text, _intent, _lang in rows]
    interactions = []
    truth = {}
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
        interaction = (
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
            )
        ).interaction
        interactions.append(interaction.pk)
        truth[interaction.pk] = rows[n % len(rows)][1]
    return interactions, truth, clinical


def outcomes(interaction_ids, truth, clinical):
    """What was done with the messages processed with understanding, against their
    true intents (the held-out labels)."""
    from collections import Counter

    from channels_app.models import Conversation
    from understanding.classifier import CLINICAL_INTENTS
    from understanding.models import IntentDecision

    decisions = list(IntentDecision.objects.filter(interaction_id__in=interaction_ids))
    teams = dict(
        Conversation.objects.filter(pk__in=[d.conversation_id for d in decisions]).values_list(
            "pk", "team__is_clinical"
        )
    )
    actions = Counter(d.action for d in decisions)
    routed = [d for d in decisions if d.action == IntentDecision.Action.ROUTED]
    routed_right = sum(1 for d in routed if truth[d.interaction_id] == d.intent)
    answered = [d for d in decisions if d.action == IntentDecision.Action.ANSWERED]
    answered_right = sum(1 for d in answered if truth[d.interaction_id] == "general_info")
    clinical_truth = [d for d in decisions if truth[d.interaction_id] in CLINICAL_INTENTS]
    clinical_answered = sum(1 for d in clinical_truth if d.action == IntentDecision.Action.ANSWERED)
    clinical_elsewhere = sum(
        1
        for d in clinical_truth
        if d.action == IntentDecision.Action.ROUTED and not teams[d.conversation_id]
    )
    clinical_in_clinical = sum(1 for d in clinical_truth if teams[d.conversation_id])
    general = sum(1 for d in decisions if truth[d.interaction_id] == "general_info")
    return (
        f"actions on {len(decisions)} held-out messages: "
        + ", ".join(f"{name or 'pending'} {n}" for name, n in sorted(actions.items()))
        + f"\nrouted by intent: {len(routed)}, of the intent it was routed for "
        f"{routed_right}\nanswered automatically: {len(answered)} "
        f"(of {general} general-information messages); truly general information "
        f"{answered_right}\nclinical messages (clinical question, results, refill): "
        f"{len(clinical_truth)}; now with the clinical team {clinical_in_clinical}; "
        f"answered automatically {clinical_answered}; routed to a non-clinical team "
        f"{clinical_elsewhere}\n"
    )


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

    interactions, truth, clinical = seed(args.messages * 2)
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

    actions = outcomes(interactions[::2], truth, clinical)
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
    out.write(actions)


if __name__ == "__main__":
    main()
