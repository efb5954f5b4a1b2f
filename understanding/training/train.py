"""Train the intent model and write understanding/model/intent.joblib.

    python -m understanding.training.train

Deterministic: the same data and library versions give the same model. The held-out
set is not read here (bench/intent_eval.py measures on it)."""

import hashlib
import io
import sys
from collections import Counter

import joblib
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from understanding.classifier import MODEL_PATH
from understanding.features import build_features
from understanding.training.dataset import training_set


def build_pipeline():
    # A linear SVM is the strongest simple learner on sparse n-grams; the sigmoid
    # calibration over 5 folds turns its margins into probabilities a threshold
    # can be set on.
    return Pipeline(
        [
            ("features", build_features()),
            (
                "model",
                CalibratedClassifierCV(
                    LinearSVC(C=0.5, class_weight="balanced", max_iter=5000, random_state=0),
                    method="sigmoid",
                    cv=5,
                ),
            ),
        ]
    )


def word_weights(pipeline):
    """Each class's weight per word feature, averaged over the calibration folds:
    what the explanation reads to name the words that weighed most."""
    features = pipeline.named_steps["features"]
    n_words = len(features.transformer_list[0][1].vocabulary_)
    folds = pipeline.named_steps["model"].calibrated_classifiers_
    coef = np.mean([fold.estimator.coef_[:, :n_words] for fold in folds], axis=0)
    return coef.astype(np.float32)


def main(out=MODEL_PATH):
    rows = training_set()
    texts = [text for text, _intent, _lang in rows]
    labels = [intent for _text, intent, _lang in rows]
    pipeline = build_pipeline().fit(texts, labels)
    bundle = {"pipeline": pipeline, "word_weights": word_weights(pipeline)}
    buffer = io.BytesIO()
    joblib.dump(bundle, buffer, compress=("xz", 6))
    data = buffer.getvalue()
    bundle["version"] = hashlib.sha256(data).hexdigest()[:12]
    joblib.dump(bundle, out, compress=("xz", 6))
    by_language = Counter(lang for _t, _i, lang in rows)
    sys.stdout.write(
        f"trained on {len(rows)} messages ({dict(by_language)}), "
        f"{len(set(labels))} intents; version {bundle['version']}; wrote {out}\n"
    )


if __name__ == "__main__":
    main()
