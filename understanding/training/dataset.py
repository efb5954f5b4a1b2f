"""Reading the shipped data sets: the training set is the generated frames plus
the hand-written examples; the held-out set is only ever read by the evaluation."""

import csv
from pathlib import Path

from understanding.training.generate import generate

HERE = Path(__file__).parent
LANGUAGES = ("en", "es")


def read_tsv(path, language):
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(text, intent, language) for intent, text in rows]


def handwritten():
    return [row for lang in LANGUAGES for row in read_tsv(HERE / f"handwritten_{lang}.tsv", lang)]


def training_set():
    """[(text, intent, language)]"""
    return generate() + handwritten()


def heldout_set():
    return [row for lang in LANGUAGES for row in read_tsv(HERE / f"heldout_{lang}.tsv", lang)]
