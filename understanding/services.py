"""Writes for understanding: the intent and language of each inbound message, and
what follows from them when no escalation rule took the message: routing by
intent, a self-service answer to a general question, a refill intake, a hand-off
to a person when the patient asks for one.

Order in the escalation worker, both in the rules' transaction (one commit per
message): `interaction_analyse` runs before the rules on the conversation they locked
and writes nothing (the language it sets on the conversation is read by the rules and
routing, and saved with their changes); `interaction_follow_up` runs after them, in a
savepoint, and stores the decision with its action. An escalation always comes first, and a
distressed or urgent message is never answered by a machine: the follow-up only
records that it held the message.
Conversations change only through channels_app's services and escalation's routing."""

import re
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from channels_app.models import Conversation, Interaction
from channels_app.services import (
    conversation_resolve_automated,
    conversation_set_language,
    event_record,
    outbound_create,
)
from contactcenter import savepoints, sql
from contactcenter.models import Team
from escalation import selectors as escalation_selectors
from escalation.services import conversation_language, conversation_route
from patients.models import Channel
from patients.services import patient_language_detected
from understanding import language as language_detection
from understanding.classifier import CLINICAL_INTENTS, classify
from understanding.features import normalise
from understanding.models import (
    IntentDecision,
    IntentRoute,
    RefillRequest,
    SelfServiceAnswer,
    SelfServiceResolution,
)
from understanding.routing import keeps_with_clinicians

logger = structlog.stdlib.get_logger(__name__)

# The whole message, in any case and punctuation, that asks for a person.
AGENT_WORDS = frozenset(
    {
        "agent",
        "agente",
        "human",
        "humano",
        "person",
        "persona",
        "a person",
        "una persona",
        "representative",
        "representante",
        "operator",
        "operador",
        "operadora",
    }
)
# A VADER compound score at or below this reads as distress: no automated answer
# or intake, a person answers.
DISTRESS_SENTIMENT = -0.5
# A refill-intake answer that the model puts this surely on another intent (other
# than refill or small talk) is not an answer: a person takes the conversation.
OFF_TOPIC_CONFIDENCE = 0.7
SAME_SENDER_WINDOW = timedelta(hours=24)
_REPLYABLE = (Channel.SMS, Channel.EMAIL, Channel.PORTAL)
_WORD = re.compile(r"[a-z0-9ñ]+")


# --- Before the rules ------------------------------------------------------------------


def interaction_analyse(*, interaction, conversation=None):
    """Classify the message and detect its language; the decision is left on
    `interaction` (interaction.intent_decision).

    In the worker, `conversation` is the one the rules locked, before they run:
    nothing is written here (a failed statement would abort the rules' transaction);
    the language is set on `conversation`, read by the rules and routing and saved
    with the rules' changes, and the follow-up stores the decision in its savepoint
    (and the patient's language when the conversation learnt one). Alone (no
    `conversation`), the decision is stored once per interaction (a second run finds
    it and changes nothing) and the conversation remembers the language, in one
    savepoint."""
    text = interaction.body
    classification = classify(text)
    language, _probability = language_detection.detect(text)
    decision = IntentDecision(
        interaction_id=interaction.pk,
        conversation_id=interaction.conversation_id,
        intent=classification.intent,
        confidence=classification.confidence,
        clinical_probability=classification.clinical_probability,
        language=language or "",
        explanation=list(classification.words),
        model_version=classification.model_version,
    )
    if conversation is not None:
        # Learnt once, or when the patient switched.
        decision.language_learnt = bool(language) and conversation.language != language
        if decision.language_learnt:
            conversation.language = language
    else:
        try:
            with transaction.atomic():
                decision.save(force_insert=True)
                _remember_language(interaction, language)
        except IntegrityError:
            return None  # analysed before
    # A one-to-one assignment caches both ways (interaction.intent_decision too).
    decision.interaction = interaction
    return decision


def _remember_language(interaction, language):
    learnt = bool(language) and conversation_set_language(
        conversation_id=interaction.conversation_id, language=language
    )
    if learnt:
        _patient_language(interaction, language)


def _patient_language(interaction, language):
    # The conversation learnt its language (once, or when the patient switched): the
    # patient's record takes it when it has none. The patient read with the message
    # (the inbound task's) tells when one was given already, so that no UPDATE is
    # sent to change nothing (a source once given is never taken back to none).
    if interaction.patient_id is None:
        return
    if Interaction.patient.is_cached(interaction) and interaction.patient.preferred_language_source:
        return
    patient_language_detected(patient_id=interaction.patient_id, language=language)


# --- After the rules ---------------------------------------------------------------


@dataclass(frozen=True)
class _Previous:
    """The sender's latest conversation closed by an automated answer."""

    pk: int
    conversation_id: object
    resolved_at: object


@dataclass(frozen=True)
class _Facts:
    """What the follow-up looks at besides the decision and the conversation, read in
    one statement (bench/understanding_worker.py counts it)."""

    previous: _Previous | None
    open_refill_id: object
    # The active route of the intent: its minimum confidence and team, or None.
    route_min_confidence: float | None
    route_team: Team | None
    staff_wrote: bool
    sentiment: float | None


def interaction_follow_up(*, interaction, conversation, escalated):
    """Act on a classified message once, in the rules' transaction after the rules
    (so an escalation always comes first), with the conversation they locked, in a
    savepoint of its own, and store the decision with its action. Returns the
    decision, or None."""
    decision = _decision_to_act_on(interaction)
    if decision is None:
        return None
    # Left by the analysis to be stored here with its action (one INSERT).
    unsaved = decision._state.adding
    try:
        action = _follow_up(decision, interaction, conversation, escalated=escalated)
    except Exception:
        if unsaved and not savepoints.in_optimistic_attempt():
            _store_without_action(decision)
        raise
    logger.info(
        "intent_decided",
        interaction_id=str(interaction.pk),
        intent=decision.intent,
        confidence=decision.confidence,
        action=action,
    )
    return decision


def _follow_up(decision, interaction, conversation, *, escalated):
    # The savepoint is what keeps a failure here from costing the rules' work (none
    # in the inbound task's optimistic attempt: contactcenter.savepoints).
    with savepoints.part():
        _store_patient_language(decision, interaction)
        facts = _facts(decision, conversation)
        previous = facts.previous
        if previous is not None and not conversation.language:
            _language_of_earlier(conversation, previous)
        action, reason = _act(decision, conversation, escalated=escalated, facts=facts)
        if previous is not None and action not in (
            IntentDecision.Action.ANSWERED,
            IntentDecision.Action.NONE,
        ):
            SelfServiceResolution.objects.filter(pk=previous.pk, came_back_at=None).update(
                came_back_at=interaction.occurred_at
            )
        decision.action, decision.action_reason = action, reason[:300]
        decision.acted_at = timezone.now()
        if decision._state.adding:
            sql.insert_row(decision)  # a fixed statement, as save() would write it
        else:
            decision.save(update_fields=["action", "action_reason", "acted_at"])
    return action


def _store_patient_language(decision, interaction):
    """The conversation learnt its language in the analysis (the rules' save stored
    it): the patient's record takes it when it has none."""
    if getattr(decision, "language_learnt", False):
        _patient_language(interaction, decision.language)


def _store_without_action(decision):
    """The follow-up failed and its savepoint took its writes back: the decision (and
    the patient's language) are stored all the same, with no action, so that every
    message keeps its intent."""
    decision.action, decision.action_reason, decision.acted_at = "", "", None
    decision._state.adding = True
    with transaction.atomic():
        _store_patient_language(decision, decision.interaction)
        decision.save(force_insert=True)


def _decision_to_act_on(interaction):
    """The decision the analysis left on the message in this transaction, in hand;
    else (the analysis failed, or the decision was stored before) the stored one not
    acted on yet, locked, or None."""
    if Interaction.intent_decision.is_cached(interaction):
        decision = interaction.intent_decision
        return decision if decision.acted_at is None else None
    # In a savepoint like every statement of the follow-up: a statement that failed
    # outside one would abort the rules' transaction, and PostgreSQL answers its
    # COMMIT with a rollback that nothing reports (test_worker.py).
    with transaction.atomic():
        decision = (
            IntentDecision.objects.select_for_update()
            .filter(interaction_id=interaction.pk, acted_at=None)
            .first()
        )
    if decision is not None:
        decision.interaction = interaction
    return decision


def _language_of_earlier(conversation, previous):
    """A sender who comes back after an automated answer ("AGENTE", too short to
    tell its language) opens a new conversation: it remembers the language of the
    one the answer closed."""
    earlier = (
        Conversation.objects.filter(pk=previous.conversation_id)
        .values_list("language", flat=True)
        .first()
    )
    if earlier:
        conversation_set_language(conversation_id=conversation.pk, language=earlier)
        conversation.language = earlier


# One statement for every message, index lookups only: written out because the ORM
# spends longer compiling its equivalent than PostgreSQL spends running it.
_FACTS_SQL = """
    SELECT previous.id, previous.conversation_id, previous.resolved_at,
           (SELECT r.id FROM understanding_refillrequest r
             WHERE r.conversation_id = %(conversation)s AND r.state = ANY(%(open)s)
             LIMIT 1),
           route.id, route.min_confidence,
           team.id, team.name, team.group_id, team.is_clinical,
           EXISTS (SELECT 1 FROM channels_app_interaction i
                    WHERE i.conversation_id = %(conversation)s AND i.author_id IS NOT NULL),
           (SELECT i.sentiment FROM channels_app_interaction i WHERE i.id = %(interaction)s)
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
            SELECT s.id, s.conversation_id, s.resolved_at
              FROM understanding_selfserviceresolution s
             WHERE s.account_id = %(account)s AND s.contact_index = %(contact)s
               AND s.contact_index <> ''
               AND s.resolved_at >= %(since)s AND s.resolved_at <= %(at)s
             ORDER BY s.resolved_at DESC LIMIT 1
      ) AS previous ON TRUE
      LEFT JOIN LATERAL (
            SELECT t.id, t.team_id, t.min_confidence FROM understanding_intentroute t
             WHERE t.intent = %(intent)s AND t.active LIMIT 1
      ) AS route ON TRUE
      LEFT JOIN contactcenter_team team ON team.id = route.team_id
"""
_TEAM_COLUMNS = ("id", "name", "group_id", "is_clinical")


def _facts(decision, conversation):
    """The sender's automated answer in the 24 hours before this message (in this
    conversation or an earlier one on the same number or mailbox), an open refill
    dialog, the active route of the intent, whether staff wrote in the conversation,
    and the message's sentiment (stored by the rules)."""
    interaction = decision.interaction
    if connection.vendor != "postgresql":
        return _facts_orm(decision, conversation)
    with connection.cursor() as cursor:
        cursor.execute(
            _FACTS_SQL,
            {
                "conversation": conversation.pk,
                "open": list(RefillRequest.OPEN_STATES),
                "interaction": interaction.pk,
                "account": conversation.account_id,
                "contact": conversation.contact_index,
                "since": interaction.occurred_at - SAME_SENDER_WINDOW,
                "at": interaction.occurred_at,
                "intent": decision.intent,
            },
        )
        row = cursor.fetchone()
    previous = _Previous(*row[0:3]) if row[0] is not None else None
    open_refill_id, route_id, route_min_confidence = row[3:6]
    team = row[6:10]
    # The route's team as it is now (the same statement read it), for the move.
    route_team = Team.from_db(connection.alias, _TEAM_COLUMNS, team) if route_id else None
    return _Facts(previous, open_refill_id, route_min_confidence, route_team, *row[10:])


def _facts_orm(decision, conversation):
    """The same facts through the ORM, in five statements: _FACTS_SQL is
    PostgreSQL's (LATERAL, ANY), and `make run`'s SQLite needs the same answers,
    not the single round trip."""
    interaction = decision.interaction
    # `account_id = NULL` is never true in SQL: no account, no earlier answer.
    previous = (
        SelfServiceResolution.objects.filter(account_id__isnull=False)
        .filter(
            account_id=conversation.account_id,
            contact_index=conversation.contact_index,
            resolved_at__gte=interaction.occurred_at - SAME_SENDER_WINDOW,
            resolved_at__lte=interaction.occurred_at,
        )
        .exclude(contact_index="")
        .order_by("-resolved_at")
        .values_list("pk", "conversation_id", "resolved_at")
        .first()
    )
    open_refill_id = (
        RefillRequest.objects.filter(
            conversation_id=conversation.pk, state__in=RefillRequest.OPEN_STATES
        )
        .values_list("pk", flat=True)
        .first()
    )
    route = (
        IntentRoute.objects.filter(intent=decision.intent, active=True)
        .select_related("team")
        .first()
    )
    staff_wrote = Interaction.objects.filter(
        conversation_id=conversation.pk, author__isnull=False
    ).exists()
    sentiment = (
        Interaction.objects.filter(pk=interaction.pk).values_list("sentiment", flat=True).first()
    )
    return _Facts(
        _Previous(*previous) if previous else None,
        open_refill_id,
        route.min_confidence if route else None,
        route.team if route else None,
        staff_wrote,
        sentiment,
    )


def _all_or_nothing():
    """An action's writes together. The follow-up's savepoint already rolls all of an
    action back when it fails, so no savepoint of its own (two statements fewer)."""
    return transaction.atomic(savepoint=False)


def _act(decision, conversation, *, escalated, facts):
    interaction = decision.interaction
    previous = facts.previous
    hold = _hold_reason(conversation, interaction, escalated=escalated)
    if hold:
        return IntentDecision.Action.HELD, hold
    if is_agent_request(interaction.body):
        return IntentDecision.Action.HANDED_OFF, _hand_off(
            conversation, decision, why=_asked_for_person_text(previous)
        )
    if facts.open_refill_id is not None:
        dialog = RefillRequest.objects.get(pk=facts.open_refill_id)
        return _refill_continue(dialog, conversation, decision)
    if previous is not None:
        # Never two automated answers in a row: the sender came back, a person answers.
        return IntentDecision.Action.HANDED_OFF, _hand_off(
            conversation,
            decision,
            why=f"wrote again {_ago(previous.resolved_at)} after an automated answer",
        )
    moved = _route_by_intent(conversation, decision, facts)
    if moved:
        return IntentDecision.Action.ROUTED, moved
    distress = _distress(facts.sentiment)
    if distress:
        return IntentDecision.Action.HELD, distress
    staffed = facts.staff_wrote
    if decision.intent == "general_info" and not staffed:
        answered = _answer(conversation, decision)
        if answered:
            return IntentDecision.Action.ANSWERED, answered
    if decision.intent == "refill" and not staffed:
        started = _refill_start(conversation, decision)
        if started:
            return IntentDecision.Action.REFILL_ASKED, started
    return IntentDecision.Action.NONE, ""


def _hold_reason(conversation, interaction, *, escalated):
    if escalated:
        return "an escalation rule took this message"
    if conversation.escalated:
        return "the conversation is escalated"
    if conversation.priority >= Conversation.Priority.HIGH:
        return f"the conversation is {conversation.get_priority_display()}"
    return ""


def _distress(score):
    """Why the message reads as distressed, or "": such a message is routed to a
    person like any other but never answered by a machine. `score` is the sentiment
    the rules stored on the message."""
    if score is not None and score <= DISTRESS_SENTIMENT:
        return f"the message reads as distressed (sentiment {score:.2f})"
    return ""


def is_agent_request(text):
    words = " ".join(_WORD.findall(normalise(text or "")))
    return words in AGENT_WORDS


def _ago(moment):
    minutes = int((timezone.now() - moment).total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"


def _asked_for_person_text(previous):
    if previous is None:
        return "asked for a person"
    return f"asked for a person {_ago(previous.resolved_at)} after an automated answer"


def decision_summary(decision):
    words = ", ".join(decision.explanation) or "none"
    return f"intent {decision.intent}, {decision.confidence:.2f}, words: {words}"


def _hand_off(conversation, decision, *, why):
    """Give the conversation to a person of its team at once, with what happened."""
    with _all_or_nothing():
        RefillRequest.objects.filter(
            conversation=conversation, state__in=RefillRequest.OPEN_STATES
        ).update(state=RefillRequest.State.HANDED_OFF, updated_at=timezone.now())
        text = (
            f"handed to {conversation.team.name}: the patient {why} ({decision_summary(decision)})"
        )
        event_record(
            conversation=conversation,
            text=text,
            metadata={"decision": "handoff", "intent_decision": str(decision.pk)},
        )
        conversation_route(conversation=conversation)
        if conversation.channel in _REPLYABLE:
            language = decision.language or conversation_language(conversation) or "en"
            with translation.override(language):
                outbound_create(
                    conversation=conversation,
                    body=_("Thank you. A person from our team will answer you here shortly."),
                    metadata={
                        "automated": True,
                        "handoff": True,
                        "intent_decision": str(decision.pk),
                    },
                )
    return text


def _route_by_intent(conversation, decision, facts):
    team = facts.route_team
    if team is None or team.pk == conversation.team_id:
        return ""
    if decision.confidence < facts.route_min_confidence:
        return ""
    if facts.staff_wrote:
        return ""
    if not team.is_clinical and keeps_with_clinicians(decision):
        return ""
    text = f"routed to {team.name}: {decision_summary(decision)}"
    with _all_or_nothing():
        event_record(
            conversation=conversation,
            text=text,
            metadata={"decision": "intent_route", "intent_decision": str(decision.pk)},
        )
        conversation_route(conversation=conversation, team=team)
    return text


# --- Self-service --------------------------------------------------------------------


def _keywords(answer):
    return [normalise(word) for word in answer.keywords.split(",") if word.strip()]


def self_service_answer_for(*, text, language):
    """The configured answer in `language` with the most keywords in the text."""
    padded = f" {normalise(text)} "
    best, best_hits = None, 0
    for answer in SelfServiceAnswer.objects.filter(active=True, language=language):
        hits = sum(1 for word in _keywords(answer) if f" {word} " in padded)
        if hits > best_hits:
            best, best_hits = answer, hits
    return best


def closing_line(language):
    with translation.override(language):
        if settings.PRACTICE_PHONE:
            return _("Reply AGENT to reach a person, or call %(phone)s.") % {
                "phone": settings.PRACTICE_PHONE
            }
        return _("Reply AGENT to reach a person.")


def _answer(conversation, decision):
    if decision.confidence < settings.SELF_SERVICE_MIN_CONFIDENCE:
        return ""
    if decision.intent in CLINICAL_INTENTS or keeps_with_clinicians(decision):
        return ""
    if conversation.channel not in _REPLYABLE:
        return ""
    language = decision.language or conversation_language(conversation) or "en"
    answer = self_service_answer_for(text=decision.interaction.body, language=language)
    if answer is None:
        return ""
    body = f"{answer.body.strip()}\n{closing_line(language)}"
    with transaction.atomic():
        reply = outbound_create(
            conversation=conversation,
            body=body,
            metadata={
                "automated": True,
                "self_service": answer.topic,
                "intent_decision": str(decision.pk),
            },
        )
        reason = (
            f"answered automatically ({answer.topic}, {language}): {decision_summary(decision)}"
        )
        if not conversation_resolve_automated(conversation=conversation, reason=reason):
            transaction.set_rollback(True)
            return ""
        SelfServiceResolution.objects.create(
            conversation=conversation,
            team=conversation.team,
            channel=conversation.channel,
            account_id=conversation.account_id,
            contact_index=conversation.contact_index,
            resolved_at=conversation.resolved_at,
        )
    logger.info("self_service_answered", interaction_id=str(reply.pk), topic=answer.topic)
    return reason


# --- Refill intake -------------------------------------------------------------------


def _ask(conversation, text, decision, step):
    return outbound_create(
        conversation=conversation,
        body=text,
        metadata={"automated": True, "refill_intake": step, "intent_decision": str(decision.pk)},
    )


def _refill_start(conversation, decision):
    if decision.confidence < settings.SELF_SERVICE_MIN_CONFIDENCE:
        return ""
    if conversation.channel not in _REPLYABLE:
        return ""
    language = decision.language or conversation_language(conversation) or "en"
    with _all_or_nothing(), translation.override(language):
        RefillRequest.objects.create(
            conversation=conversation,
            state=RefillRequest.State.ASKING_MEDICATION,
            details={"language": language, "request": decision.interaction.body},
        )
        _ask(conversation, _("Which medication do you need refilled?"), decision, "medication")
    return f"refill intake: asked which medication ({decision_summary(decision)})"


def _off_topic(decision):
    return (
        decision.intent not in ("refill", "other") and decision.confidence >= OFF_TOPIC_CONFIDENCE
    ) or (keeps_with_clinicians(decision) and decision.intent != "refill")


def _refill_continue(dialog, conversation, decision):
    body = decision.interaction.body.strip()
    if _off_topic(decision):
        return IntentDecision.Action.HANDED_OFF, _hand_off(
            conversation,
            decision,
            why="answered the refill questions with something else",
        )
    details = dict(dialog.details)
    language = details.get("language", "en")
    if dialog.state == RefillRequest.State.ASKING_MEDICATION:
        details["medication"] = body
        with _all_or_nothing(), translation.override(language):
            dialog.details = details
            dialog.state = RefillRequest.State.ASKING_PHARMACY
            dialog.save(update_fields=["details", "state", "updated_at"])
            _ask(conversation, _("Which pharmacy should we send it to?"), decision, "pharmacy")
        return IntentDecision.Action.REFILL_ASKED, "refill intake: asked which pharmacy"
    details["pharmacy"] = body
    return IntentDecision.Action.REFILL_REQUESTED, _refill_request(
        dialog, conversation, decision, details
    )


def _refill_request(dialog, conversation, decision, details):
    """One structured request in the conversation, and the conversation to the
    clinical team (the route set for refills, else the practice's clinical team)."""
    route = IntentRoute.objects.select_related("team").filter(intent="refill", active=True).first()
    team = route.team if route else escalation_selectors.clinical_team() or conversation.team
    language = details.get("language", "en")
    with _all_or_nothing():
        dialog.details = details
        dialog.state = RefillRequest.State.REQUESTED
        dialog.save(update_fields=["details", "state", "updated_at"])
        event_record(
            conversation=conversation,
            text=(
                "Refill request\n"
                f"Medication: {details['medication']}\n"
                f"Pharmacy: {details['pharmacy']}\n"
                f"Patient's words: {details.get('request', '')}\n"
                f"Language: {language}"
            ),
            metadata={
                "decision": "refill_request",
                "refill_request": str(dialog.pk),
                "intent_decision": str(decision.pk),
            },
        )
        with translation.override(language):
            _ask(
                conversation,
                _("Thank you. Your refill request is with our clinical team."),
                decision,
                "done",
            )
        conversation_route(
            conversation=conversation, team=team if team.pk != conversation.team_id else None
        )
    return f"refill request sent to {team.name}"
