"""What understanding adds to the processing of one inbound message in the worker.

The escalation worker's service, escalation.services.interaction_process (sentiment,
rules, routing, SLA, in its transaction), is timed per message on this machine's
PostgreSQL, interleaved:

  A  with understanding connected: before the rules, the intent model and the
     language detector run and the decision is stored; after the rules, in their
     transaction, the follow-up reads what it looks at and acts (routes for four
     intents and twelve self-service answers are configured, so the lookups and
     the actions are real);
  B  the same service with understanding's receivers disconnected: the baseline.

Messages are the held-out evaluation texts, each stored as a fresh SMS conversation
and processed once. A and B get the same texts, in pairs, in alternating order (A
then B, then B then A), after a warm-up of both sides that is not counted. Prints the
medians and 95th percentiles of A and B, their difference (what understanding adds,
its database writes and actions included), the SQL statements and commits per
message on each side (counted on further pairs, untimed), and the classification
alone (intent model and language detection, pure CPU).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_understanding \\
        .venv/bin/python bench/understanding_worker.py [--messages 400]
"""

import argparse
import os
import random
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
    # The held-out file is in intent order: a fixed shuffle gives the warm-up, the
    # timed and the counted messages the same mix of intents and languages.
    random.Random(23).shuffle(rows)
    interactions = []
    truth = {}
    for n in range(count):
        # Messages 2k and 2k+1 (one for each side) have the same text.
        row = rows[(n // 2) % len(rows)]
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
                body=row[0],
                provider_id="",
                occurred_at=timezone.now(),
                source="bench",
                raw_payload={},
                conversation=conversation,
            )
        ).interaction
        interactions.append(interaction.pk)
        truth[interaction.pk] = row[1]
    return interactions, truth, clinical


def by_action(timings):
    """A's median per action taken ({interaction_id: ms}), against B's: a routing
    move or an automated answer is channels_app's work that understanding sets off."""
    from understanding.models import IntentDecision

    actions = dict(
        IntentDecision.objects.filter(interaction_id__in=list(timings)).values_list(
            "interaction_id", "action"
        )
    )
    groups = {}
    for interaction_id, elapsed in timings.items():
        groups.setdefault(actions.get(interaction_id) or "pending", []).append(elapsed)
    return ", ".join(
        f"{name} {len(values)} at {statistics.median(values):.2f} ms"
        for name, values in sorted(groups.items(), key=lambda item: -len(item[1]))
    )


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


WARM_UP_PAIRS = 5
COUNTED_PAIRS = 40


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def process(interaction_id, *, connected):
    """interaction_process with understanding connected or not; returns ms."""
    from escalation.services import interaction_process
    from escalation.signals import inbound_analysing, inbound_processed
    from understanding import receivers

    if not connected:
        inbound_analysing.disconnect(receivers.analyse_inbound)
        inbound_processed.disconnect(receivers.follow_up_inbound)
    try:
        started = time.perf_counter()
        interaction_process(interaction_id=interaction_id)
        return (time.perf_counter() - started) * 1000
    finally:
        if not connected:
            inbound_analysing.connect(receivers.analyse_inbound)
            inbound_processed.connect(receivers.follow_up_inbound)


def statements(pairs):
    """SQL statements and commits per message (untimed): the medians on each side,
    and the median added per pair by A's action."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from understanding.models import IntentDecision

    counts = {}
    for a_id, b_id in pairs:
        for interaction_id, connected in ((a_id, True), (b_id, False)):
            with CaptureQueriesContext(connection) as captured:
                process(interaction_id, connected=connected)
            sql = [query["sql"] for query in captured.captured_queries]
            counts[interaction_id] = (len(sql), sql.count("COMMIT"))
    actions = dict(
        IntentDecision.objects.filter(interaction_id__in=[a for a, _b in pairs]).values_list(
            "interaction_id", "action"
        )
    )
    added = {}
    for a_id, b_id in pairs:
        added.setdefault(actions.get(a_id) or "pending", []).append(
            counts[a_id][0] - counts[b_id][0]
        )
    sides = {
        side: (
            statistics.median(counts[pair[index]][0] for pair in pairs),
            statistics.median(counts[pair[index]][1] for pair in pairs),
        )
        for side, index in ((True, 0), (False, 1))
    }
    by_action = ", ".join(
        f"{name} {statistics.median(values):g}"
        for name, values in sorted(added.items(), key=lambda item: -len(item[1]))
    )
    return sides, by_action


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per side")
    args = parser.parse_args()
    setup_django()
    from django.core.management import call_command

    from bench.audit_overhead import ensure_database

    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)

    from understanding.classifier import classify
    from understanding.language import detect
    from understanding.training.dataset import heldout_set

    pairs_total = WARM_UP_PAIRS + args.messages + COUNTED_PAIRS
    interactions, truth, clinical = seed(pairs_total * 2)
    pairs = list(zip(interactions[::2], interactions[1::2], strict=True))
    warm, timed, counted = (
        pairs[:WARM_UP_PAIRS],
        pairs[WARM_UP_PAIRS : WARM_UP_PAIRS + args.messages],
        pairs[WARM_UP_PAIRS + args.messages :],
    )
    classify("warm up")  # the model loads once per worker process
    for a_id, b_id in warm:
        process(a_id, connected=True)
        process(b_id, connected=False)
    timings = {True: {}, False: {}}
    for n, (a_id, b_id) in enumerate(timed):
        # Alternate which side goes first, so neither always follows the other.
        order = ((a_id, True), (b_id, False)) if n % 2 == 0 else ((b_id, False), (a_id, True))
        for interaction_id, connected in order:
            timings[connected][interaction_id] = process(interaction_id, connected=connected)
    with_understanding, without = list(timings[True].values()), list(timings[False].values())
    counts, added_by_action = statements(counted)

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

    actions = outcomes([a_id for a_id, _b_id in timed], truth, clinical)
    a, b = statistics.median(with_understanding), statistics.median(without)
    a95, b95 = percentile(with_understanding, 0.95), percentile(without, 0.95)
    (a_sql, a_commits), (b_sql, b_commits) = counts[True], counts[False]
    out = sys.stdout
    out.write(f"load average: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores\n")
    out.write(f"messages per side: {len(with_understanding)} / {len(without)}\n")
    out.write(f"A  with understanding:  median {a:.2f} ms, p95 {a95:.2f} ms\n")
    out.write(f"B  without (baseline):  median {b:.2f} ms, p95 {b95:.2f} ms\n")
    out.write(
        f"understanding adds {a - b:.2f} ms per message at the median (A/B {a / b:.2f}x), "
        f"{a95 - b95:.2f} ms at p95\n"
    )
    paired = [timings[True][a_id] - timings[False][b_id] for a_id, b_id in timed]
    out.write(
        f"median of the paired differences (same text, A minus B): "
        f"{statistics.median(paired):.2f} ms\n"
    )
    out.write(f"A by action: {by_action(timings[True])}\n")
    out.write(
        f"statements per message (median of {len(counted)} pairs): A {a_sql:g} "
        f"({a_commits:g} commit), B {b_sql:g} ({b_commits:g} commit): "
        f"understanding adds {a_sql - b_sql:g}, {a_commits - b_commits:g} commit; "
        f"added by action: {added_by_action}\n"
    )
    out.write(
        f"classification (intent model and language detection): median "
        f"{statistics.median(classification):.3f} ms, the model alone "
        f"{statistics.median(model):.3f} ms\n"
    )
    out.write(
        "the rest of the difference is understanding's database work: storing the "
        "decision and the language, then the follow-up's read and its action\n"
    )
    out.write(actions)


if __name__ == "__main__":
    main()
