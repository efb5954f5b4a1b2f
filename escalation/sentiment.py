"""Sentiment of a patient message: VADER's compound score, offline (the lexicon ships in
the vaderSentiment package)."""

import threading

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# VADER is linear in the text but slow per character (pure Python); the opening of a
# message carries its tone, and a pasted document must not stall the escalations queue.
MAX_TEXT_CHARS = 5_000

_analyzer: SentimentIntensityAnalyzer | None = None
_analyzer_lock = threading.Lock()


def _get_analyzer() -> SentimentIntensityAnalyzer:
    # Loading the lexicon takes tens of milliseconds, so it happens once per process, on
    # first use rather than at import (the web processes import this module too).
    global _analyzer
    analyzer = _analyzer
    if analyzer is None:
        with _analyzer_lock:
            if _analyzer is None:
                _analyzer = SentimentIntensityAnalyzer()
            analyzer = _analyzer
    return analyzer


def _truncate(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    cut = text[:MAX_TEXT_CHARS]
    # Cutting inside a word could turn "unhappy" into "unhap" or "happy" into "hap".
    last_space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    return cut[:last_space] if last_space > 0 else cut


def score_text(text: str) -> float:
    """VADER compound score of text in [-1, 1], rounded to 4 decimals; 0.0 for blank text.

    Only the first MAX_TEXT_CHARS characters (cut at a word boundary) are scored.
    """
    if not text or text.isspace():
        return 0.0
    compound = _get_analyzer().polarity_scores(_truncate(text))["compound"]
    return round(min(1.0, max(-1.0, compound)), 4)
