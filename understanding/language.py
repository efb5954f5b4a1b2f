"""The language of a message, offline: py3langid's model ships inside its package.
Only the languages the practice writes to patients in are considered, and a message
too short to tell (ok, 👍, a name) says nothing."""

import threading

from django.conf import settings
from py3langid.langid import MODEL_FILE, LanguageIdentifier

# Below this normalised probability, or with fewer letters than this, the message
# does not change what the conversation already knows.
MIN_PROBABILITY = 0.9
MIN_LETTERS = 8

_lock = threading.Lock()
_identifier = None


def supported_languages():
    return [code.split("-")[0] for code, _name in settings.LANGUAGES]


def identifier():
    """The identifier, loaded on first use (once per process)."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                identifier.set_languages(supported_languages())
                _identifier = identifier
    return _identifier


def detect(text):
    """(language code, probability), or (None, probability) when unsure."""
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return None, 0.0
    language, probability = identifier().classify(text)
    probability = float(probability)
    if probability < MIN_PROBABILITY:
        return None, probability
    return language, probability
