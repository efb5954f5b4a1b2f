"""The intent model on the hand-written held-out set (never trained on), English
and Spanish separately: per-intent precision, recall and F1, macro-F1, the
confusion matrix, how often a clinical message would leave the clinical team, and
the median time to classify one message against a baseline of the same run (the
text features alone, without the model).

    .venv/bin/python bench/intent_eval.py [--repeat 5]

Needs no database: the model is read from understanding/model/intent.joblib."""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from understanding.classifier import CLINICAL_INTENTS, INTENTS, classify
from understanding.features import normalise
from understanding.routing import keeps_with_clinicians
from understanding.training.dataset import LANGUAGES, heldout_set

ABBREVIATIONS = {
    "appointment_book": "book",
    "appointment_reschedule": "resch",
    "appointment_cancel": "cancel",
    "appointment_confirm": "confirm",
    "refill": "refill",
    "billing": "bill",
    "test_results": "result",
    "records_forms": "forms",
    "clinical_question": "clinic",
    "general_info": "info",
    "complaint": "compl",
    "other": "other",
}


# The harshest routing table: every non-clinical intent sends its messages to a
# non-clinical team from this confidence up.
WORST_CASE_MIN_CONFIDENCE = 0.5


def routes_away_from_clinicians(decision):
    return (
        decision.intent not in CLINICAL_INTENTS
        and decision.confidence >= WORST_CASE_MIN_CONFIDENCE
        and not keeps_with_clinicians(decision)
    )


def timed(function, texts, repeat):
    samples = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            function(text)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def report(language, rows, repeat):
    texts = [text for text, _intent, _lang in rows]
    truth = [intent for _text, intent, _lang in rows]
    decisions = [classify(text) for text in texts]
    predicted = [decision.intent for decision in decisions]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(INTENTS), zero_division=0
    )
    out = sys.stdout
    out.write(f"\n== {language}: {len(rows)} held-out messages ==\n")
    out.write(f"{'intent':<24}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>5}\n")
    for i, intent in enumerate(INTENTS):
        out.write(
            f"{intent:<24}{precision[i]:>10.3f}{recall[i]:>8.3f}{f1[i]:>8.3f}{support[i]:>5}\n"
        )
    macro = sum(f1) / len(f1)
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(rows)
    out.write(f"macro-F1 {macro:.3f}   accuracy {accuracy:.3f}\n")
    matrix = confusion_matrix(truth, predicted, labels=list(INTENTS))
    out.write("confusion (rows: true, columns: predicted)\n")
    out.write(" " * 8 + "".join(f"{ABBREVIATIONS[i]:>7}" for i in INTENTS) + "\n")
    for i, intent in enumerate(INTENTS):
        out.write(f"{ABBREVIATIONS[intent]:<8}" + "".join(f"{n:>7}" for n in matrix[i]) + "\n")
    clinical = [i for i, intent in enumerate(truth) if intent in CLINICAL_INTENTS]
    labelled_away = [i for i in clinical if predicted[i] not in CLINICAL_INTENTS]
    moved_away = [i for i in clinical if routes_away_from_clinicians(decisions[i])]
    out.write(
        f"clinical messages (clinical question, results, refill): {len(clinical)}; "
        f"top intent non-clinical {len(labelled_away)} ({len(labelled_away) / len(clinical):.1%}); "
        f"moved to a non-clinical team {len(moved_away)} "
        f"({len(moved_away) / len(clinical):.1%}) when every non-clinical intent routes "
        f"away at {WORST_CASE_MIN_CONFIDENCE}\n"
    )
    for i in labelled_away:
        decision = decisions[i]
        kept = "kept" if i not in moved_away else "MOVED"
        out.write(
            f"    {truth[i]} -> {decision.intent} {decision.confidence:.2f} "
            f"(clinical {decision.clinical_probability:.2f}, {kept}): {texts[i]!r}\n"
        )
    model_ms = timed(classify, texts, repeat)
    features_ms = timed(normalise, texts, repeat)
    out.write(
        f"median per message: classify {model_ms:.3f} ms "
        f"(baseline, normalising the text only: {features_ms:.4f} ms; "
        f"{model_ms / features_ms:.0f}x)\n"
    )
    return macro


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = heldout_set()
    classify(rows[0][0])  # load the model outside the timings
    for language in LANGUAGES:
        report(language, [row for row in rows if row[2] == language], args.repeat)


if __name__ == "__main__":
    main()
