"""Reads for understanding: a conversation's intent decisions and the reply
suggestions for its latest message."""

import re
from dataclasses import dataclass

from channels_app.models import CannedResponse, Interaction
from understanding.classifier import classify, intent_probabilities
from understanding.features import normalise

SUGGESTIONS = 3
_WORD = re.compile(r"[a-zñ]{3,}")
# Words too common to say why a reply fits.
_COMMON = frozenset(
    [
        "the",
        "and",
        "you",
        "your",
        "for",
        "are",
        "was",
        "have",
        "has",
        "this",
        "that",
        "with",
        "can",
        "could",
        "would",
        "will",
        "please",
        "what",
        "when",
        "how",
        "our",
        "from",
        "any",
        "not",
        "but",
        "just",
        "about",
        "there",
        "their",
        "they",
        "them",
        "then",
        "than",
        "que",
        "los",
        "las",
        "una",
        "por",
        "para",
        "con",
        "como",
        "cuando",
        "usted",
        "sus",
        "del",
    ]
)
# How much the shared words count against the intent match.
_WORD_WEIGHT = 0.5


@dataclass(frozen=True)
class Suggestion:
    canned_response: CannedResponse
    score: float
    why: str


def latest_inbound(*, conversation):
    return (
        Interaction.objects.filter(
            conversation=conversation,
            direction=Interaction.Direction.INBOUND,
            kind__in=(Interaction.Kind.MESSAGE, Interaction.Kind.VOICEMAIL),
        )
        .select_related("intent_decision")
        .order_by("-occurred_at", "-id")
        .first()
    )


def _content_words(text):
    return {word for word in _WORD.findall(normalise(text)) if word not in _COMMON}


def reply_suggestions(*, conversation, limit=SUGGESTIONS):
    """(latest inbound message's decision or None, [Suggestion]): the team's canned
    responses that best fit the patient's latest message. A response fits as much as
    the model reads it as the message's intent (times the message's confidence),
    plus half the share of the message's words it contains; each comes with why."""
    message = latest_inbound(conversation=conversation)
    if message is None or not message.body.strip():
        return None, []
    decision = getattr(message, "intent_decision", None)
    intent = decision.intent if decision else classify(message.body).intent
    confidence = decision.confidence if decision else None
    message_words = _content_words(message.body)
    ranked = []
    for canned in CannedResponse.objects.filter(team_id=conversation.team_id).order_by("pk"):
        reading = intent_probabilities(f"{canned.title}. {canned.body}")
        shared = sorted(message_words & _content_words(f"{canned.title} {canned.body}"))
        answers = reading[intent]
        intent_fit = answers * (confidence if confidence is not None else 1.0)
        word_fit = len(shared) / len(message_words) if message_words else 0.0
        score = intent_fit + _WORD_WEIGHT * word_fit
        if answers == max(reading.values()):
            reasons = [f"answers intent {intent} ({answers:.2f})"]
        else:
            reasons = [f"weak match for intent {intent} ({answers:.2f})"]
        if shared:
            reasons.append("shares the words " + ", ".join(shared[:5]))
        ranked.append(Suggestion(canned, round(score, 4), "; ".join(reasons)))
    ranked.sort(key=lambda s: (-s.score, s.canned_response.pk))
    return decision, ranked[:limit]
