"""What an escalation rule may say, and whether it holds for a message or a breach.

Conditions (every one given must hold):

- ``phrases``: keywords or phrases, matched on word boundaries, case- and
  accent-insensitive (text_matching.py);
- ``sentiment_at_or_below``: the message's VADER score is at or below this (-1..1);
- ``channels``: the conversation's channel is one of these;
- ``patient_flags``: the patient has at least one of these flags;
- ``repeat_contact``: ``{"count": N, "days": D}``, at least N inbound contacts in the
  last D days since the patient's last resolved conversation;
- ``no_response_within_sla``: true makes the rule about SLA breaches (a response or
  the resolution overdue, found by the beat sweep) instead of arriving messages;
  only channels and patient_flags combine with it, since a breach has no message of
  its own.

Actions: ``set_priority`` (raises, never lowers), ``route_to_team`` (a team id or
"clinical"), ``route_to_supervisor``, ``notify_supervisors``, ``auto_reply_template``
($first_name, $practice_name; sent at most once per conversation and rule).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from contactcenter.templating import template_placeholders
from escalation.text_matching import compile_phrases, validate_phrases
from patients.models import PATIENT_FLAGS, Channel

CLINICAL = "clinical"
PRIORITIES = ("low", "normal", "high", "urgent")
AUTO_REPLY_PLACEHOLDERS = frozenset({"first_name", "practice_name"})
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
AUTO_REPLY_MAX_LENGTH = 1600

_CONDITIONS = (
    "phrases",
    "sentiment_at_or_below",
    "channels",
    "patient_flags",
    "repeat_contact",
    "no_response_within_sla",
)
_ACTIONS = (
    "set_priority",
    "route_to_team",
    "route_to_supervisor",
    "notify_supervisors",
    "auto_reply_template",
    "auto_reply_translations",
)
# Channels alone would escalate every message of a channel: they only narrow a rule.
_TRIGGERS = ("phrases", "sentiment_at_or_below", "patient_flags", "repeat_contact")
_MESSAGE_ONLY = ("phrases", "sentiment_at_or_below", "repeat_contact")


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _choices_errors(name, value, allowed):
    if isinstance(value, str) or not isinstance(value, list) or not value:
        return [f"{name}: give a non-empty list (any of: {', '.join(allowed)})."]
    unknown = [item for item in value if item not in allowed]
    if unknown:
        shown = ", ".join(repr(item) for item in unknown)
        return [f"{name}: unknown {shown} (any of: {', '.join(allowed)})."]
    return []


def conditions_errors(conditions):
    """Messages naming each problem of a conditions object; empty when it is valid."""
    if not isinstance(conditions, dict):
        return ["Conditions must be an object."]
    errors = [
        f"unknown condition {key!r} (known: {', '.join(_CONDITIONS)})."
        for key in conditions
        if key not in _CONDITIONS
    ]
    if "phrases" in conditions:
        phrases = conditions["phrases"]
        try:
            validate_phrases(phrases)
        except ValueError as exc:
            errors.append(f"phrases: {exc}.")
        else:
            if not phrases:
                errors.append("phrases: give at least one keyword or phrase.")
    if "sentiment_at_or_below" in conditions:
        threshold = conditions["sentiment_at_or_below"]
        if not _is_number(threshold) or not -1 <= threshold <= 1:
            errors.append(
                f"sentiment_at_or_below: must be a number from -1 to 1, got {threshold!r}."
            )
    if "channels" in conditions:
        errors += _choices_errors("channels", conditions["channels"], Channel.values)
    if "patient_flags" in conditions:
        errors += _choices_errors("patient_flags", conditions["patient_flags"], PATIENT_FLAGS)
    if "repeat_contact" in conditions:
        errors += _repeat_contact_errors(conditions["repeat_contact"])
    breach = conditions.get("no_response_within_sla", False)
    if not isinstance(breach, bool):
        errors.append(f"no_response_within_sla: must be true or false, got {breach!r}.")
    elif breach:
        combined = [key for key in _MESSAGE_ONLY if key in conditions]
        if combined:
            errors.append(
                "no_response_within_sla: a breach has no message of its own, so it combines "
                f"only with channels and patient_flags, not with {', '.join(combined)}."
            )
    if not breach and not any(key in conditions for key in _TRIGGERS):
        errors.append(
            "A rule needs a trigger: phrases, sentiment_at_or_below, patient_flags, "
            "repeat_contact or no_response_within_sla (channels only narrow a rule)."
        )
    return errors


def _repeat_contact_errors(value):
    if not isinstance(value, dict) or set(value) != {"count", "days"}:
        return ['repeat_contact: must be {"count": N, "days": D}.']
    errors = []
    if not _is_int(value["count"]) or not 2 <= value["count"] <= 100:
        errors.append(
            f"repeat_contact: count must be a whole number from 2 to 100, got {value['count']!r}."
        )
    if not _is_int(value["days"]) or not 1 <= value["days"] <= 365:
        errors.append(
            f"repeat_contact: days must be a whole number from 1 to 365, got {value['days']!r}."
        )
    return errors


def actions_errors(actions):
    """Messages naming each problem of an actions object; empty when it is valid.
    Whether a team id exists is the model's check (this module reads no database)."""
    if not isinstance(actions, dict):
        return ["Actions must be an object."]
    errors = [
        f"unknown action {key!r} (known: {', '.join(_ACTIONS)})."
        for key in actions
        if key not in _ACTIONS
    ]
    if "set_priority" in actions and actions["set_priority"] not in PRIORITIES:
        errors.append(
            f"set_priority: must be one of {', '.join(PRIORITIES)}, "
            f"got {actions['set_priority']!r}."
        )
    if "route_to_team" in actions:
        team = actions["route_to_team"]
        if not (team == CLINICAL or (_is_int(team) and team > 0)):
            errors.append(f'route_to_team: must be a team id or "clinical", got {team!r}.')
    for name in ("route_to_supervisor", "notify_supervisors"):
        if name in actions and not isinstance(actions[name], bool):
            errors.append(f"{name}: must be true or false, got {actions[name]!r}.")
    if "auto_reply_template" in actions:
        errors += _template_errors(actions["auto_reply_template"])
    if "auto_reply_translations" in actions:
        errors += _translations_errors(actions)
    return errors


def _translations_errors(actions):
    """`auto_reply_translations`: {language code: template}, the auto-reply in the
    languages patients write in (else the catalog's translation, else as written)."""
    translations = actions["auto_reply_translations"]
    name = "auto_reply_translations"
    if "auto_reply_template" not in actions:
        return [f"{name}: translations of what? Give auto_reply_template too."]
    if not isinstance(translations, dict):
        return [f"{name}: must be an object of language code: text."]
    errors = []
    for language, template in translations.items():
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            errors.append(f"{name}: {language!r} is not a language code (en, es, pt-BR).")
            continue
        errors += _template_errors(template, name=f"{name}.{language}")
    return errors


def _template_errors(template, *, name="auto_reply_template"):
    if not isinstance(template, str) or not template.strip():
        return [f"{name}: must be a non-empty text."]
    if len(template) > AUTO_REPLY_MAX_LENGTH:
        return [f"{name}: {len(template)} characters, at most {AUTO_REPLY_MAX_LENGTH}."]
    try:
        unknown = template_placeholders(template) - AUTO_REPLY_PLACEHOLDERS
    except ValueError as exc:
        return [f"{name}: {exc}."]
    if unknown:
        names = ", ".join(f"${placeholder}" for placeholder in sorted(unknown))
        allowed = ", ".join(f"${placeholder}" for placeholder in sorted(AUTO_REPLY_PLACEHOLDERS))
        return [f"{name}: unknown placeholder(s) {names} (allowed: {allowed})."]
    return []


@dataclass(frozen=True)
class Facts:
    """What a rule is tested against: an arriving message, or an SLA breach."""

    channel: str
    patient_flags: frozenset[str] = frozenset()
    text: str = ""
    sentiment: float | None = None
    # Inbound contacts without a resolution in the last `days` days; called only by
    # rules that ask, since it costs a query.
    contacts_within: Callable[[int], int] = field(default=lambda days: 0)
    sla_breach: bool = False


@dataclass(frozen=True)
class Match:
    """Why a rule held, for the escalation's reason and its matched terms."""

    terms: tuple[str, ...] = ()
    sentiment: float | None = None
    sentiment_threshold: float | None = None
    contacts: int | None = None
    repeat_contact: dict | None = None
    flags: tuple[str, ...] = ()
    sla_breach: bool = False

    def as_json(self):
        data = {"terms": list(self.terms), "sentiment": self.sentiment}
        if self.sentiment_threshold is not None:
            data["sentiment_at_or_below"] = self.sentiment_threshold
        if self.repeat_contact is not None:
            data["repeat_contact"] = {**self.repeat_contact, "contacts": self.contacts}
        if self.flags:
            data["patient_flags"] = list(self.flags)
        if self.sla_breach:
            data["sla_breach"] = True
        return data

    def describe(self):
        parts = []
        if self.terms:
            parts.append("matched " + ", ".join(f'"{term}"' for term in self.terms))
        if self.sentiment_threshold is not None:
            parts.append(
                f"sentiment {self.sentiment:+.2f} at or below {self.sentiment_threshold:+.2f}"
            )
        elif self.sentiment is not None:
            parts.append(f"sentiment {self.sentiment:+.2f}")
        if self.repeat_contact is not None:
            parts.append(
                f"{self.contacts} contacts in {self.repeat_contact['days']} day(s) "
                "without a resolution"
            )
        if self.flags:
            parts.append("patient flags " + ", ".join(self.flags))
        if self.sla_breach:
            parts.append("no staff response within the SLA")
        return "; ".join(parts)


@lru_cache(maxsize=256)
def _matcher(phrases):
    return compile_phrases(phrases)


def evaluate(conditions, facts):
    """A Match when every condition holds for facts, else None."""
    if bool(conditions.get("no_response_within_sla")) != facts.sla_breach:
        return None
    channels = conditions.get("channels")
    if channels and facts.channel not in channels:
        return None
    flags = ()
    if conditions.get("patient_flags"):
        flags = tuple(flag for flag in conditions["patient_flags"] if flag in facts.patient_flags)
        if not flags:
            return None
    terms = ()
    if conditions.get("phrases"):
        terms = tuple(_matcher(tuple(conditions["phrases"])).find(facts.text))
        if not terms:
            return None
    threshold = conditions.get("sentiment_at_or_below")
    if threshold is not None and (facts.sentiment is None or facts.sentiment > threshold):
        return None
    contacts = None
    repeat = conditions.get("repeat_contact")
    if repeat:
        contacts = facts.contacts_within(repeat["days"])
        if contacts < repeat["count"]:
            return None
    return Match(
        terms=terms,
        sentiment=facts.sentiment,
        sentiment_threshold=threshold,
        contacts=contacts,
        repeat_contact=dict(repeat) if repeat else None,
        flags=flags,
        sla_breach=facts.sla_breach,
    )
