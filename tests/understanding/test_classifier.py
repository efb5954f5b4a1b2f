"""The shipped intent model: what it decides, how it explains itself, and that
the compiled serving form gives the trained pipeline's own probabilities."""

import numpy as np
import pytest

from understanding.classifier import INTENTS, classify, load_bundle, model
from understanding.features import normalise
from understanding.routing import keeps_with_clinicians
from understanding.training.dataset import LANGUAGES, heldout_set, training_set


def test_normalise_spells_out_shorthand_and_drops_accents_and_stretching():
    assert normalise("Pls can u move my APPT 2morrow?") == (
        "please can you move my appointment tomorrow ?"
    )
    assert normalise("Q hora abren el sábado xfa") == "que hora abren el sabado por favor"
    assert normalise("heeeelp") == "heelp"
    assert normalise("año") == "año"


def test_compiled_model_gives_the_pipelines_probabilities():
    pipeline = load_bundle()["pipeline"]
    texts = [text for text, _intent, _lang in heldout_set()[::7]]
    expected = pipeline.predict_proba(texts)
    compiled = model()
    for text, row in zip(texts, expected, strict=True):
        indices, values = compiled.features(text)
        assert np.allclose(compiled.probabilities(indices, values), row, atol=1e-9)
    assert list(compiled.classes) == sorted(INTENTS)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("my bill is wrong, insurance was charged twice", "billing"),
        ("what time do you open on saturday", "general_info"),
        ("a qué hora abren el sábado", "general_info"),
        ("i need a refill of my lisinopril", "refill"),
        ("necesito cancelar mi cita del lunes", "appointment_cancel"),
        ("my throat hurts and i have a fever, should i come in", "clinical_question"),
    ],
)
def test_plain_requests_get_their_intent(text, intent):
    decision = classify(text)
    assert decision.intent == intent
    assert decision.confidence > 0.5


def test_explanation_names_words_of_the_message_that_point_to_the_intent():
    decision = classify("my bill is wrong, insurance was charged twice")
    assert decision.words
    assert set(decision.words) <= {"bill", "insurance", "charged", "wrong", "twice", "my bill"}
    assert decision.model_version == load_bundle()["version"]


def test_a_symptom_keeps_the_message_with_clinicians_even_when_another_intent_wins():
    decision = classify("my feet have been swelling every evening and my bill is high")
    assert keeps_with_clinicians(decision)
    assert not keeps_with_clinicians(classify("can i pay my balance online"))


def test_training_set_is_large_in_both_languages_and_never_contains_a_heldout_message():
    rows = training_set()
    for language in LANGUAGES:
        assert sum(1 for row in rows if row[2] == language) >= 500
    assert {intent for _text, intent, _lang in rows} == set(INTENTS)
    trained = {normalise(text) for text, _intent, _lang in rows}
    heldout = heldout_set()
    assert len(heldout) >= 240
    # One- and two-word replies ("ok", "si voy") are bound to recur; nothing longer may.
    repeated = [text for text, _i, _l in heldout if normalise(text) in trained]
    assert all(len(text.split()) <= 2 for text in repeated), repeated
