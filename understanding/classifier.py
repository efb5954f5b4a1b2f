"""The intent of a message, from the model shipped in understanding/model/ (trained
by understanding/training/train.py; nothing is downloaded). Pure CPU, loaded once
per process.

The trained scikit-learn pipeline is the model of record; serving reads the same
numbers from it in a compiled form (`CompiledModel`): the message is normalised
once, its n-grams are looked up in the vectorizers' vocabularies, and every
calibration fold's linear scores come from one matrix product. scikit-learn's
per-call checks cost about 10 ms a message; this form costs a fraction of one.
A test holds the two to the same probabilities."""

import math
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from understanding.features import normalise

MODEL_PATH = Path(__file__).parent / "model" / "intent.joblib"

INTENTS = (
    "appointment_book",
    "appointment_reschedule",
    "appointment_cancel",
    "appointment_confirm",
    "refill",
    "billing",
    "test_results",
    "records_forms",
    "clinical_question",
    "general_info",
    "complaint",
    "other",
)
# Intents that ask for a clinician's judgement: never answered by a machine, never
# routed away from the clinical team.
CLINICAL_INTENTS = frozenset({"clinical_question", "test_results", "refill"})
EXPLANATION_WORDS = 3
# Words that weigh in the model but explain nothing to a reader; an n-gram with one
# of them is left out of the explanation.
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "you",
        "your",
        "we",
        "our",
        "is",
        "are",
        "was",
        "be",
        "do",
        "does",
        "did",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "it",
        "this",
        "that",
        "can",
        "could",
        "would",
        "will",
        "please",
        "what",
        "when",
        "how",
        "so",
        "just",
        "have",
        "has",
        "el",
        "la",
        "los",
        "las",
        "un",
        "una",
        "yo",
        "mi",
        "me",
        "mis",
        "tu",
        "su",
        "de",
        "del",
        "en",
        "a",
        "al",
        "por",
        "para",
        "y",
        "o",
        "que",
        "es",
        "se",
        "lo",
        "le",
        "con",
        "como",
        "cuando",
        "puedo",
        "pueden",
        "favor",
    ]
)

_lock = threading.Lock()
_compiled = None


@dataclass(frozen=True)
class Classification:
    intent: str
    confidence: float
    words: tuple[str, ...]
    # The summed probability of the clinical intents: routing keeps a message that
    # may be clinical with clinicians even when another intent came out on top.
    clinical_probability: float
    model_version: str


class CompiledModel:
    def __init__(self, bundle):
        pipeline = bundle["pipeline"]
        self.version = bundle["version"]
        self.classes = [str(name) for name in pipeline.classes_]
        words, chars = (step for _name, step in pipeline.named_steps["features"].transformer_list)
        self.blocks = []
        offset = 0
        for vectorizer in (words, chars):
            # The analyzer without its preprocessor: the text is normalised once.
            vectorizer_copy = _without_preprocessor(vectorizer)
            self.blocks.append(
                (
                    vectorizer_copy.build_analyzer(),
                    vectorizer.vocabulary_,
                    vectorizer.idf_.astype(np.float64),
                    offset,
                )
            )
            offset += len(vectorizer.vocabulary_)
        self.word_names = words.get_feature_names_out()
        self.word_weights = bundle["word_weights"]
        folds = pipeline.named_steps["model"].calibrated_classifiers_
        self.coef = np.vstack([fold.estimator.coef_ for fold in folds]).astype(np.float64)
        self.intercept = np.concatenate([fold.estimator.intercept_ for fold in folds])
        self.a = np.concatenate([[c.a_ for c in fold.calibrators] for fold in folds])
        self.b = np.concatenate([[c.b_ for c in fold.calibrators] for fold in folds])
        self.folds = len(folds)

    def features(self, text):
        """(column indices, TF-IDF values) of the message, each block L2-normalised
        as TfidfVectorizer does."""
        normalised = normalise(text)
        indices, values = [], []
        for analyzer, vocabulary, idf, offset in self.blocks:
            counts = Counter(
                vocabulary[gram] for gram in analyzer(normalised) if gram in vocabulary
            )
            if not counts:
                continue
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(
                (1.0 + math.log(n) for n in counts.values()), dtype=np.float64, count=len(counts)
            )
            weights = tf * idf[columns]
            weights /= np.linalg.norm(weights)
            indices.append(columns + offset)
            values.append(weights)
        if not indices:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(indices), np.concatenate(values)

    def probabilities(self, indices, values):
        n_classes = len(self.classes)
        scores = self.coef[:, indices] @ values + self.intercept
        calibrated = 1.0 / (1.0 + np.exp(self.a * scores + self.b))
        per_fold = calibrated.reshape(self.folds, n_classes)
        totals = per_fold.sum(axis=1, keepdims=True)
        per_fold = np.where(totals > 0, per_fold / np.where(totals > 0, totals, 1), 1 / n_classes)
        return per_fold.mean(axis=0)

    def explain(self, indices, values, class_index):
        n_words = len(self.word_names)
        in_words = indices < n_words
        columns, tfidf = indices[in_words], values[in_words]
        weights = self.word_weights[class_index, columns] * tfidf
        chosen = []
        for order in np.argsort(-weights):
            if weights[order] <= 0 or len(chosen) == EXPLANATION_WORDS:
                break
            name = str(self.word_names[columns[order]])
            parts = name.split()
            if any(part in _FILLER for part in parts):
                continue
            # A bigram adds nothing when one of its words is already named.
            if not any(part in chosen for part in parts):
                chosen.append(name)
        return tuple(chosen)

    def classify(self, text):
        indices, values = self.features(text)
        probabilities = self.probabilities(indices, values)
        best = int(np.argmax(probabilities))
        clinical = sum(
            probabilities[i] for i, name in enumerate(self.classes) if name in CLINICAL_INTENTS
        )
        return Classification(
            intent=self.classes[best],
            confidence=round(float(probabilities[best]), 4),
            words=self.explain(indices, values, best),
            clinical_probability=round(float(clinical), 4),
            model_version=self.version,
        )


def _without_preprocessor(vectorizer):
    from sklearn.base import clone

    copy = clone(vectorizer)
    copy.set_params(preprocessor=lambda text: text)
    return copy


def load_bundle(path=MODEL_PATH):
    return joblib.load(path)


def model():
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                _compiled = CompiledModel(load_bundle())
    return _compiled


def classify(text):
    """The most likely intent, its calibrated probability, the words of the message
    that pushed most towards it, and how likely the message is clinical."""
    return model().classify(text)


def intent_probabilities(text):
    """{intent: calibrated probability} of every intent for the text."""
    compiled = model()
    probabilities = compiled.probabilities(*compiled.features(text))
    return {name: float(p) for name, p in zip(compiled.classes, probabilities, strict=True)}
