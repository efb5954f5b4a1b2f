"""Writes for escalation: rules, the processing of each inbound interaction
(sentiment, rules, routing, SLA due times), SLA breaches, manual escalations and
their acknowledgement, routing and staff availability.

Every decision leaves an event on the conversation's timeline, so a human sees
why the conversation is where it is.
"""

import functools
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone, translation

from channels_app.models import Conversation, Interaction, OutboundMessage
from channels_app.services import (
    conversation_assign,
    conversation_move_to_team,
    conversation_set_priority,
    event_record,
    outbound_create,
)
from contactcenter import savepoints, sql
from contactcenter.models import StaffProfile, Team
from contactcenter.templating import render_template
from escalation import rules as rule_logic
from escalation import selectors
from escalation.models import (
    BusinessHours,
    Escalation,
    EscalationRule,
    EscalationRun,
    Notification,
)
from escalation.sentiment import score_text
from escalation.signals import inbound_analysing, inbound_processed
from patients.models import Channel

logger = structlog.stdlib.get_logger(__name__)

PRIORITY_BY_NAME = {label: value for value, label in Conversation.Priority.choices}
# Kinds whose body is text the patient wrote or said (a voicemail's is its transcript).
_TEXT_KINDS = (Interaction.Kind.MESSAGE, Interaction.Kind.VOICEMAIL)
# Channels an auto-reply can go out on: a call cannot be answered with text.
_REPLYABLE_CHANNELS = (Channel.SMS, Channel.EMAIL, Channel.PORTAL)
# Routing passes when every candidate was locked by a concurrent router.
ROUTE_ATTEMPTS = 5


def _locked_conversation(conversation_id):
    """What `Conversation.objects.select_for_update(of=("self",)).select_related(
    "team__group", "team__business_hours", "patient").get(pk=conversation_id)`
    returns, as a fixed statement (compiling that QuerySet cost several times
    running it, on every message). Only the conversation's row is locked; the
    team's group (its members, for routing), business hours (the SLA's calendar)
    and the patient come in the same read, cached on the instances as
    select_related caches them, so reading them costs no statement."""
    statement, parts = _locked_conversation_statement(connection.vendor)
    rows = sql.fetch(
        statement,
        [sql.param(Conversation._meta.pk, conversation_id)],
        [selected for _model, fields in parts for selected in fields],
    )
    if not rows:
        raise Conversation.DoesNotExist(f"No conversation {conversation_id}.")
    row, instances, start = rows[0], [], 0
    for model, fields in parts:
        values = row[start : start + len(fields)]
        start += len(fields)
        # A LEFT JOIN that found nothing (no business hours, no patient yet).
        present = values[fields.index(model._meta.pk)] is not None
        instances.append(
            model.from_db(connection.alias, [f.attname for f in fields], values)
            if present
            else None
        )
    conversation, team, group, hours, patient = instances
    # Into the relations' caches, as select_related puts them: no column changes.
    Team._meta.get_field("group").set_cached_value(team, group)
    Team._meta.get_field("business_hours").set_cached_value(team, hours)
    Conversation._meta.get_field("team").set_cached_value(conversation, team)
    Conversation._meta.get_field("patient").set_cached_value(conversation, patient)
    return conversation


@functools.lru_cache(maxsize=4)
def _locked_conversation_statement(vendor):
    """(statement, [(model, selected fields)] in the order of its columns)."""
    from django.contrib.auth.models import Group

    from patients.models import Patient

    quote = connection.ops.quote_name
    parts = [
        (model, list(model._meta.concrete_fields))
        for model in (Conversation, Team, Group, BusinessHours, Patient)
    ]
    columns = ", ".join(
        f"{alias}.{quote(selected.column)}"
        for alias, (_model, fields) in zip("ctghp", parts, strict=True)
        for selected in fields
    )

    def column(model, name):
        return quote(model._meta.get_field(name).column)

    def table(model):
        return quote(model._meta.db_table)

    statement = (
        f"SELECT {columns} FROM {table(Conversation)} c "  # noqa: S608
        f"JOIN {table(Team)} t ON t.{column(Team, 'id')} = c.{column(Conversation, 'team')} "
        f"JOIN {table(Group)} g ON g.{column(Group, 'id')} = t.{column(Team, 'group')} "
        f"LEFT JOIN {table(BusinessHours)} h "
        f"ON h.{column(BusinessHours, 'team')} = t.{column(Team, 'id')} "
        f"LEFT JOIN {table(Patient)} p "
        f"ON p.{quote(Patient._meta.pk.column)} = c.{column(Conversation, 'patient')} "
        f"WHERE c.{quote(Conversation._meta.pk.column)} = %s"
    )
    if connection.features.has_select_for_update_of:
        statement += " FOR UPDATE OF c"
    return statement, parts


def _team_calendar(team):
    """The team's calendar, or None for a team that works around the clock; read
    with the locked conversation when it is still its team, else looked up."""
    try:
        hours = team.business_hours
    except BusinessHours.DoesNotExist:
        return None
    return hours.calendar()


# --- Rules -------------------------------------------------------------------------

RULE_FIELDS = ("name", "order", "active", "conditions", "actions")


def rule_create(*, name, conditions, actions, order=100, active=True):
    """Raises django.core.exceptions.ValidationError naming each bad field."""
    rule = EscalationRule(
        name=name, order=order, active=active, conditions=conditions, actions=actions
    )
    rule.full_clean()
    rule.save()
    return rule


def rule_update(*, rule, changes):
    for name, value in changes.items():
        if name not in RULE_FIELDS:
            raise ValueError(f"{name} is not a rule field")
        setattr(rule, name, value)
    rule.full_clean()
    rule.save()
    return rule


def rule_delete(*, rule):
    rule.delete()


SLA_POLICY_FIELDS = ("first_response_minutes", "next_response_minutes", "resolution_minutes")


def sla_policy_update(*, policy, changes):
    """Change a priority's targets (business minutes). Raises
    django.core.exceptions.ValidationError naming each bad field, as the admin's
    form does (the model's validation, and its check that every target is above
    zero). Conversations already running keep the due times they were given."""
    for name, value in changes.items():
        if name not in SLA_POLICY_FIELDS:
            raise ValueError(f"{name} is not an SLA policy field")
        setattr(policy, name, value)
    errors = {
        name: ["Must be at least one minute."]
        for name in SLA_POLICY_FIELDS
        if isinstance(getattr(policy, name), int) and getattr(policy, name) < 1
    }
    try:
        policy.full_clean()
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)
    policy.save(update_fields=list(changes))
    return policy


# --- Routing -------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteDecision:
    assignee_id: int | None
    how: str  # kept, coordinator, least_loaded, queue
    text: str


def _try_assign(profile_pk):
    """Lock one available agent's profile without waiting and count their open
    conversations inside the lock. Returns (state, load): state is "ok" (the lock is
    kept until the caller's transaction commits the assignment, so a concurrent router
    counts it), "locked", "unavailable" or "full" (the lock is released at once by
    rolling the savepoint back, so a full agent never blocks other routers)."""
    with transaction.atomic():
        profile = (
            StaffProfile.objects.select_for_update(skip_locked=True).filter(pk=profile_pk).first()
        )
        if profile is None:
            return "locked", None
        if profile.availability != StaffProfile.Availability.AVAILABLE:
            transaction.set_rollback(True)
            return "unavailable", None
        load = selectors.open_load_of(user_id=profile.user_id)
        if load >= profile.capacity:
            transaction.set_rollback(True)
            return "full", load
        return "ok", load


def conversation_language(conversation):
    """The language the patient writes in: detected from their messages, else their
    record's preferred language."""
    if conversation.language:
        return conversation.language
    return conversation.patient.preferred_language if conversation.patient else ""


def _pick_assignee(conversation, member_ids):
    """Continuity first (the patient's primary coordinator), then the least loaded
    available member below capacity, preferring those who speak the conversation's
    language. Returns (user_id, how, load) or None."""
    coordinator_id = conversation.patient.primary_coordinator_id if conversation.patient else None
    language = conversation_language(conversation)
    for attempt in range(ROUTE_ATTEMPTS):
        rows = selectors.available_profiles(user_ids=member_ids).values_list(
            "user_id", "pk", "languages"
        )
        profiles = {user_id: pk for user_id, pk, _languages in rows}
        speaks = {user_id for user_id, _pk, languages in rows if language in (languages or ())}
        loads = selectors.open_load(user_ids=list(profiles))
        # Among those who speak the patient's language, the least loaded first.
        ordered = sorted(
            profiles,
            key=lambda user_id: (user_id not in speaks, loads.get(user_id, 0), user_id),
        )
        if coordinator_id in profiles:
            ordered.remove(coordinator_id)
            ordered.insert(0, coordinator_id)
        contended = False
        for user_id in ordered:
            state, load = _try_assign(profiles[user_id])
            if state == "ok":
                how = "coordinator" if user_id == coordinator_id else "least_loaded"
                return user_id, how, load
            contended = contended or state == "locked"
        if not contended:
            return None
        # Every remaining candidate was being routed to at this instant; their
        # routers commit in milliseconds.
        time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))  # noqa: S311 - jitter
    return None


@dataclass(frozen=True)
class _Routed:
    decision: RouteDecision
    moved: bool
    # The decision's text when no change recorded it (left in the queue it was in).
    unrecorded: str


def _route_locked(conversation, *, team=None, supervisors_only=False, metadata=None):
    """Route a conversation the caller holds locked, through channels_app's
    services (each records its own timeline event)."""
    metadata = {"decision": "route", **(metadata or {})}
    target = team or conversation.team
    # The caller holds the conversation's lock, so its team and assignee as read are
    # current: the services (which lock again to check) are called only for a change.
    moved = target.pk != conversation.team_id and conversation_move_to_team(
        conversation=conversation, team=target, metadata=metadata
    )
    member_ids = selectors.team_member_ids(team=target)
    supervisor_ids = (
        list(
            selectors.team_members(team=target, supervisors_only=True).values_list("pk", flat=True)
        )
        if supervisors_only
        else member_ids
    )
    current = conversation.assignee_id
    if current is not None and current in supervisor_ids:
        return _Routed(RouteDecision(current, "kept", ""), moved, "")
    picked = _pick_assignee(conversation, supervisor_ids) if supervisor_ids else None
    fallback = ""
    if picked is None and supervisors_only:
        fallback = f"no supervisor of {target.name} available; "
        picked = _pick_assignee(conversation, member_ids)
    if picked is None:
        assignee = None
        text = f"{fallback}no one available in {target.name}: left in the team queue"
        decision = RouteDecision(None, "queue", text)
    else:
        user_id, how, load = picked
        assignee = get_user_model().objects.get(pk=user_id)
        if how == "coordinator":
            why = "the patient's primary coordinator"
        elif supervisors_only and not fallback:
            why = f"least loaded supervisor ({load} open)"
        else:
            why = f"least loaded ({load} open)"
        decision = RouteDecision(
            user_id, how, f"{fallback}routed to {assignee.get_username()}: {why}"
        )
    changed = (assignee.pk if assignee else None) != conversation.assignee_id and (
        conversation_assign(
            conversation=conversation, assignee=assignee, note=decision.text, metadata=metadata
        )
    )
    return _Routed(decision, moved, "" if changed else decision.text)


def conversation_route(*, conversation, team=None, supervisors_only=False):
    """Give a conversation an owner in `team` (default: its own): the patient's
    primary coordinator when in the team, available and below capacity; otherwise
    the available member with the fewest open conversations below capacity; nobody
    leaves it unassigned in the team queue. Concurrent routers never assign past
    capacity. Each decision is a timeline event."""
    with transaction.atomic():
        conversation = _locked_conversation(conversation.pk)
        routed = _route_locked(conversation, team=team, supervisors_only=supervisors_only)
        if routed.unrecorded:
            event_record(
                conversation=conversation, text=routed.unrecorded, metadata={"decision": "route"}
            )
    return routed.decision


def staff_availability_set(*, user, availability):
    if availability not in StaffProfile.Availability.values:
        raise ValueError(f"unknown availability {availability!r}")
    profile, _ = StaffProfile.objects.get_or_create(user=user)
    if profile.availability != availability:
        profile.availability = availability
        profile.save(update_fields=["availability"])
    return profile


# --- SLA -----------------------------------------------------------------------------


def _add_business_minutes(calendar, start, minutes):
    if calendar is None:
        return start + timedelta(minutes=minutes)
    return calendar.add_business_time(start, timedelta(minutes=minutes))


def _sla_on_inbound(conversation, interaction):
    """Set the response owed for an inbound message: first response while staff never
    answered, next response afterwards, counted in the team's business hours. A due
    time only moves earlier (a raised priority tightens it; a second message before
    the answer does not push it back). Returns the timeline events."""
    if (
        conversation.last_staff_response_at is not None
        and conversation.last_staff_response_at >= interaction.occurred_at
    ):
        return []  # answered before this processing ran
    policy = selectors.sla_policy_for(priority=conversation.priority)
    if policy is None:
        return []
    calendar = _team_calendar(conversation.team)
    first = conversation.last_staff_response_at is None
    if first:
        label, minutes = "first", policy.first_response_minutes
        current = conversation.first_response_due_at
    else:
        label, minutes = "next", policy.next_response_minutes
        current = conversation.next_response_due_at
    events = []
    due = _add_business_minutes(calendar, interaction.occurred_at, minutes)
    if current is None or due < current:
        if first:
            conversation.first_response_due_at = due
        else:
            conversation.next_response_due_at = due
        events.append(
            f"{label} response due {due.isoformat()} "
            f"({conversation.get_priority_display()}: {minutes} business minutes)"
        )
    resolution_due = _add_business_minutes(
        calendar, conversation.created_at, policy.resolution_minutes
    )
    if conversation.resolution_due_at is None or resolution_due < conversation.resolution_due_at:
        conversation.resolution_due_at = resolution_due
    owed = [d for d in (conversation.first_response_due_at, conversation.next_response_due_at) if d]
    conversation.sla_due_at = min(owed) if owed else None
    return events


def conversation_response_recorded(*, conversation_id, replied_at):
    """A staff reply meets the response owed, unless a newer inbound message came in
    after it (that one is still owed)."""
    return (
        Conversation.objects.filter(pk=conversation_id)
        .filter(Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lte=replied_at))
        .exclude(first_response_due_at=None, next_response_due_at=None, sla_due_at=None)
        .update(first_response_due_at=None, next_response_due_at=None, sla_due_at=None)
    )


# --- Escalating ------------------------------------------------------------------------


@dataclass
class _Plan:
    """What the matched rules ask for, merged: the first rule naming a team wins,
    priority only rises."""

    priority: int | None = None
    priority_rule: str = ""
    team: Team | None = None
    team_events: list[str] = field(default_factory=list)
    supervisors_only: bool = False


def _resolve_team(target):
    if target == rule_logic.CLINICAL:
        return selectors.clinical_team()
    return Team.objects.filter(pk=target).first()


def _plan(matches):
    plan = _Plan()
    for rule, _match in matches:
        actions = rule.actions
        name = actions.get("set_priority")
        if name and (plan.priority is None or PRIORITY_BY_NAME[name] > plan.priority):
            plan.priority, plan.priority_rule = PRIORITY_BY_NAME[name], rule.name
        if "route_to_team" in actions and plan.team is None:
            plan.team = _resolve_team(actions["route_to_team"])
            if plan.team is None:
                plan.team_events.append(
                    f'rule "{rule.name}" routes to {actions["route_to_team"]!r}, '
                    "which is no team: the conversation stays in its team"
                )
        plan.supervisors_only = plan.supervisors_only or actions.get("route_to_supervisor", False)
    return plan


def _raise_priority(conversation, priority, why, metadata, actor=None):
    """Priority only rises here; channels_app records the change."""
    if priority is not None and priority > conversation.priority:
        conversation_set_priority(
            conversation=conversation, priority=priority, actor=actor, reason=why, metadata=metadata
        )


def _apply_plan(conversation, plan, *, escalating, metadata):
    """Raise the priority and route when the conversation needs an owner: it has
    none, it goes to another team, or a rule wants a supervisor on it. Returns the
    events no change recorded."""
    events = [*plan.team_events]
    _raise_priority(conversation, plan.priority, f'rule "{plan.priority_rule}"', metadata)
    target = plan.team or conversation.team
    if (
        conversation.assignee_id is None
        or target.pk != conversation.team_id
        or plan.supervisors_only
    ):
        routed = _route_locked(
            conversation, team=target, supervisors_only=plan.supervisors_only, metadata=metadata
        )
        # A routine message on a queued conversation that stays queued changes
        # nothing: saying so again on every message would bury the timeline.
        if escalating or routed.moved:
            events.append(routed.unrecorded)
    return events


def _notify_supervisors(escalation, team):
    supervisors = list(selectors.team_members(team=team, supervisors_only=True))
    Notification.objects.bulk_create(
        [Notification(user=user, escalation=escalation) for user in supervisors],
        ignore_conflicts=True,
    )
    if not supervisors:
        return f"no supervisor in {team.name} to notify"
    return "notified " + ", ".join(user.get_username() for user in supervisors)


def auto_reply_text(actions, language):
    """A rule's auto-reply template in the patient's language: the rule's own
    translation (`auto_reply_translations`), else the practice's catalog's
    (locale/: the shipped rules' texts), else the template as written."""
    template = actions["auto_reply_template"]
    if not language:
        return template
    translations = actions.get("auto_reply_translations") or {}
    if language in translations:
        return translations[language]
    with translation.override(language):
        return translation.gettext(template)


def _auto_reply(conversation, escalation, rule):
    """Send the rule's auto-reply unless this rule already answered this conversation."""
    if conversation.channel not in _REPLYABLE_CHANNELS:
        return f'auto-reply of rule "{rule.name}" not sent: a call cannot be answered by text'
    if Escalation.objects.filter(
        conversation=conversation, rule=rule, auto_reply__isnull=False
    ).exists():
        return ""
    patient = conversation.patient
    language = conversation_language(conversation)
    with translation.override(language or None):
        # "Hi $first_name" still reads well for a sender not yet matched to a patient.
        unnamed = translation.pgettext("greeting without a name", "there")
    context = {
        "first_name": patient.given_name if patient else unnamed,
        "practice_name": settings.PRACTICE_NAME,
    }
    body = render_template(auto_reply_text(rule.actions, language), context)
    reply = outbound_create(
        conversation=conversation,
        body=body,
        metadata={"auto_reply": True, "rule": rule.pk, "escalation": str(escalation.pk)},
    )
    escalation.auto_reply = reply
    escalation.save(update_fields=["auto_reply"])
    if reply.outbound.state == OutboundMessage.State.FAILED:
        return f'auto-reply of rule "{rule.name}" not sent: {reply.outbound.last_error}'
    return f'auto-reply queued (rule "{rule.name}")'


def _escalation_record(conversation, *, kind, reason, to_team, from_team, from_user, **fields):
    escalation = Escalation.objects.create(
        kind=kind,
        conversation=conversation,
        patient_id=conversation.patient_id,
        reason=reason,
        to_team=to_team,
        from_team=from_team,
        from_user_id=from_user,
        to_user_id=conversation.assignee_id,
        context_summary=selectors.context_summary(conversation=conversation),
        **fields,
    )
    conversation.escalated = True
    logger.info(
        "escalation_created",
        escalation_id=str(escalation.pk),
        conversation_id=str(conversation.pk),
        kind=kind,
        rule_id=escalation.rule_id,
        to_team_id=to_team.pk,
        to_user_id=escalation.to_user_id,
    )
    return escalation


# The columns escalation keeps on the conversation (its flag, SLA targets and
# sentiment); status, team, assignee, priority, snooze and labels change only
# through channels_app's services.
_CONVERSATION_FIELDS = [
    "escalated",
    "first_response_due_at",
    "next_response_due_at",
    "resolution_due_at",
    "sla_due_at",
    "sentiment_first",
    "sentiment_latest",
    "updated_at",
]


def _record_events(conversation, events, *, actor=None, metadata=None):
    """Events are texts, or (text, metadata) pairs for those that name a record."""
    for event in filter(None, events):
        text, extra = event if isinstance(event, tuple) else (event, {})
        event_record(
            conversation=conversation,
            text=text,
            actor=actor,
            metadata={**(metadata or {}), **extra},
        )


def _run_claim(interaction_id, stage, sentiment=None, processed_at=None):
    """Insert the run row unless it exists: True when this processing is the first.
    ON CONFLICT instead of a savepoint around an INSERT that may fail: one statement
    instead of three, in the transaction that holds the conversation's lock. With a
    `sentiment` on PostgreSQL, the same statement stores it on the interaction when
    the claim succeeds (a data-modifying WITH: one round trip instead of two), and
    `processed_at` too when given (the inbound task's mark, unless already set);
    returns (claimed, sentiment and mark stored)."""
    # The fields prepare the values: SQLite (make run) stores a UUID as hex text and
    # a datetime as text, and its driver binds neither object itself.
    values = [
        EscalationRun._meta.get_field(name).get_db_prep_value(value, connection)
        for name, value in (
            ("interaction", interaction_id),
            ("stage", stage),
            ("created_at", timezone.now()),
        )
    ]
    claim = (
        f"INSERT INTO {EscalationRun._meta.db_table} (interaction_id, stage, created_at) "  # noqa: S608
        "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        if sentiment is None or connection.vendor != "postgresql":
            cursor.execute(claim, values)
            return cursor.rowcount == 1, False
        quote = connection.ops.quote_name
        field = Interaction._meta.get_field("sentiment")
        sets, changes = (
            [f"{quote(field.column)} = %s"],
            [field.get_db_prep_save(sentiment, connection)],
        )
        if processed_at is not None:
            mark = Interaction._meta.get_field("processed_at")
            sets.append(f"{quote(mark.column)} = COALESCE({quote(mark.column)}, %s)")
            changes.append(mark.get_db_prep_save(processed_at, connection))
        cursor.execute(
            f"WITH claimed AS ({claim} RETURNING 1) "  # noqa: S608
            f"UPDATE {quote(Interaction._meta.db_table)} SET {', '.join(sets)} "
            f"WHERE {quote(Interaction._meta.pk.column)} = %s "
            "AND EXISTS (SELECT 1 FROM claimed)",
            [*values, *changes, values[0]],
        )
        return cursor.rowcount == 1, True


def interaction_process(*, interaction_id, interaction=None):
    """Everything an inbound interaction sets off, in one transaction: its sentiment
    (stored on it and on the conversation), the rules, the escalations they raise with
    their actions, routing when the conversation needs an owner, and the SLA due
    times. Processing the same interaction again changes nothing (EscalationRun).
    `interaction` is the row when the caller has it (the inbound task): not read
    again, and no look-up of the run before the transaction (the first processing is
    the usual case there; a repeat is still refused by the run row). Returns the
    escalations created."""
    if interaction is None:
        interaction = (
            Interaction.objects.filter(pk=interaction_id, direction=Interaction.Direction.INBOUND)
            .only(
                "id",
                "conversation_id",
                "patient_id",
                "direction",
                "kind",
                "body",
                "channel",
                "occurred_at",
            )
            .first()
        )
        repeat_check = True
    else:
        repeat_check = False
    if interaction is None or interaction.direction != Interaction.Direction.INBOUND:
        return []
    text = interaction.body if interaction.kind in _TEXT_KINDS else ""
    has_text = bool(text and not text.isspace())
    stage = EscalationRun.Stage.TEXT if has_text else EscalationRun.Stage.CONTACT
    if (
        repeat_check
        and EscalationRun.objects.filter(interaction_id=interaction.pk, stage=stage).exists()
    ):
        return []
    # Scoring is pure CPU: done before the transaction, so no lock waits on it.
    sentiment = score_text(text) if has_text else None
    active_rules = selectors.active_rules()
    # A savepoint inside the inbound task's transaction (its optimistic attempt
    # has none: contactcenter.savepoints), a transaction of its own in the task of
    # the escalations queue.
    # In the inbound task's optimistic attempt the claim also sets the task's
    # processed mark (one UPDATE fewer): that attempt commits whole or not at all.
    # Never in a savepoint that can roll back while the task goes on.
    processed_at = (
        timezone.now()
        if not repeat_check
        and savepoints.in_optimistic_attempt()
        and interaction.processed_at is None
        else None
    )
    with savepoints.part():
        conversation = _locked_conversation(interaction.conversation_id)
        claimed, stored = _run_claim(interaction.pk, stage, sentiment, processed_at)
        if not claimed:
            return []  # processed already, or by another worker meanwhile
        if stored and processed_at is not None:
            interaction.processed_at = processed_at  # the inbound task skips its mark
        if conversation.patient_id == interaction.patient_id:
            # The patient read with the locked conversation is the message's: what
            # receivers look up on interaction.patient is not read a second time.
            interaction.patient = conversation.patient
        if has_text:
            # Before the rules, on the locked conversation: what a receiver learns
            # (the language) is set on it for the rules and routing to read, and
            # saved with the rules' changes.
            _analyse(interaction, conversation)
        escalations = _process_locked(
            conversation, interaction, sentiment, text, active_rules, stored
        )
        if has_text:
            # After the rules, still in their transaction and with the conversation
            # locked: what a receiver does (understanding's routing, automated
            # answers) costs no transaction of its own, and the rules have decided.
            _announce_processed(interaction, conversation, bool(escalations))
        return escalations


def _analyse(interaction, conversation):
    for receiver, result in inbound_analysing.send_robust(
        sender=Interaction, interaction=interaction, conversation=conversation
    ):
        if isinstance(result, Exception):
            if savepoints.in_optimistic_attempt():
                raise result
            logger.error(
                "inbound_analysis_failed",
                interaction_id=str(interaction.pk),
                receiver=getattr(receiver, "__qualname__", str(receiver)),
                error=result.__class__.__name__,
            )


def _announce_processed(interaction, conversation, escalated):
    for receiver, result in inbound_processed.send_robust(
        sender=Interaction,
        interaction=interaction,
        conversation=conversation,
        escalated=escalated,
    ):
        if isinstance(result, Exception):
            if savepoints.in_optimistic_attempt():
                raise result
            logger.error(
                "inbound_followup_failed",
                interaction_id=str(interaction.pk),
                receiver=getattr(receiver, "__qualname__", str(receiver)),
                error=result.__class__.__name__,
            )


def interaction_processing_failed(*, interaction_id, error):
    """The last resort when an inbound message could not be processed for good (a
    bug, bad data in a rule): no rule looked at it, so a person must. Its
    conversation is escalated to its team at high priority or above, with the
    reason, and the team's supervisors are notified; once per interaction.
    `error` is an exception class name (never its message, which could quote PHI)."""
    interaction = (
        Interaction.objects.filter(pk=interaction_id, direction=Interaction.Direction.INBOUND)
        .only("id", "conversation_id")
        .first()
    )
    if interaction is None:
        return None
    with transaction.atomic():
        conversation = _locked_conversation(interaction.conversation_id)
        if Escalation.objects.filter(
            kind=Escalation.Kind.FAILSAFE, interaction_id=interaction.pk
        ).exists():
            return None
        metadata = {"decision": "failsafe"}
        _raise_priority(conversation, Conversation.Priority.HIGH, "processing failed", metadata)
        reason = (
            f"Automatic processing of this message failed ({error}): no rule looked at "
            "it. Read it and decide by hand."
        )
        escalation = _escalation_record(
            conversation,
            kind=Escalation.Kind.FAILSAFE,
            reason=reason,
            interaction_id=interaction.pk,
            matched={"error": error},
            to_team=conversation.team,
            from_team=conversation.team,
            from_user=conversation.assignee_id,
        )
        events = [f"escalated to {conversation.team.name}: {reason}"]
        events.append(_notify_supervisors(escalation, conversation.team))
        conversation.save(update_fields=_CONVERSATION_FIELDS)
        _record_events(
            conversation,
            events,
            metadata={"decision": "failsafe", "escalation": str(escalation.pk)},
        )
    logger.error(
        "inbound_processing_failed",
        interaction_id=str(interaction.pk),
        escalation_id=str(escalation.pk),
        error=error,
    )
    return escalation


def _process_locked(
    conversation, interaction, sentiment, text, active_rules, sentiment_stored=False
):
    if sentiment is not None:
        if not sentiment_stored:
            sql.update_row(Interaction, interaction.pk, sentiment=sentiment)
        if conversation.sentiment_first is None:
            conversation.sentiment_first = sentiment
        if conversation.last_inbound_at is None or interaction.occurred_at >= (
            conversation.last_inbound_at
        ):
            conversation.sentiment_latest = sentiment
    facts = selectors.message_facts(conversation=conversation, text=text, sentiment=sentiment)
    matches = []
    for rule in active_rules:
        match = rule_logic.evaluate(rule.conditions, facts)
        already = (
            match is not None
            and Escalation.objects.filter(
                conversation=conversation, rule=rule, interaction_id=interaction.pk
            ).exists()
        )
        if match is not None and not already:
            matches.append((rule, match))
    from_team, from_user = conversation.team, conversation.assignee_id
    metadata = {"decision": "inbound", "interaction": str(interaction.pk)}
    events = _apply_plan(conversation, _plan(matches), escalating=bool(matches), metadata=metadata)
    # After the rules and routing: the SLA follows the raised priority and the
    # calendar of the team that now owns the conversation.
    sla_events = _sla_on_inbound(conversation, interaction)
    if matches:
        # Routine due times show on the conversation (and in the inbox's SLA sort);
        # one set by an escalation is part of its story.
        events += sla_events
    escalations = []
    for rule, match in matches:
        escalation = _escalation_record(
            conversation,
            kind=Escalation.Kind.RULE,
            rule=rule,
            interaction_id=interaction.pk,
            reason=f'Rule "{rule.name}": {match.describe()}',
            matched=match.as_json(),
            to_team=conversation.team,
            from_team=from_team,
            from_user=from_user,
        )
        escalations.append(escalation)
        events.append(
            (
                f"escalated to {conversation.team.name}: {escalation.reason}",
                {"escalation": str(escalation.pk), "rule": rule.pk},
            )
        )
        if rule.actions.get("notify_supervisors"):
            events.append(_notify_supervisors(escalation, conversation.team))
        if rule.actions.get("auto_reply_template"):
            events.append(_auto_reply(conversation, escalation, rule))
    # With the language inbound_analysing's receivers set on it (understanding's
    # detection), in the same statement; a fixed one, as save() would write it.
    sql.save_fields(conversation, [*_CONVERSATION_FIELDS, "language"])
    _record_events(conversation, events, metadata=metadata)
    return escalations


def sla_breaches_sweep(*, now=None, limit=500):
    """Escalate every conversation with an overdue response or resolution target,
    once per breach (the due time that passed): running again finds nothing new.
    Rules with `no_response_within_sla` apply to both. Returns how many."""
    now = now or timezone.now()
    breach_rules = [
        rule
        for rule in EscalationRule.objects.filter(active=True)
        if rule.conditions.get("no_response_within_sla")
    ]
    escalated = 0
    for conversation_id, due_field in selectors.conversations_in_breach(now=now, limit=limit):
        if _breach_escalate(
            conversation_id=conversation_id, due_field=due_field, now=now, breach_rules=breach_rules
        ):
            escalated += 1
    return escalated


def _breach_escalate(*, conversation_id, due_field, now, breach_rules):
    with transaction.atomic():
        # skip_locked: a conversation being worked on right now is looked at next minute.
        conversation = (
            Conversation.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("team", "patient")
            .filter(
                pk=conversation_id,
                status__in=list(Conversation.ACTIVE_STATUSES),
                **{f"{due_field}__lte": now},
            )
            .first()
        )
        if conversation is None:
            return None
        due = getattr(conversation, due_field)
        if Escalation.objects.filter(
            conversation=conversation, kind=Escalation.Kind.SLA_BREACH, breach_due_at=due
        ).exists():
            return None
        patient = conversation.patient
        facts = rule_logic.Facts(
            channel=conversation.channel,
            patient_flags=frozenset(patient.flags if patient else ()),
            sla_breach=True,
        )
        matches = [
            (rule, match)
            for rule in breach_rules
            if (match := rule_logic.evaluate(rule.conditions, facts)) is not None
        ]
        from_team, from_user = conversation.team, conversation.assignee_id
        events = _apply_plan(
            conversation, _plan(matches), escalating=True, metadata={"decision": "sla_breach"}
        )
        if due_field == "resolution_due_at":
            target = "resolution"
            reason = f"Not resolved within the SLA: resolution was due {due.isoformat()}"
        elif due_field == "callback_due_at":
            target = "callback"
            reason = f"Callback not made within its promised window: it was due {due.isoformat()}"
        else:
            which = "first" if due == conversation.first_response_due_at else "next"
            target = f"{which}_response"
            reason = f"No staff response within the SLA: {which} response was due {due.isoformat()}"
        late = int((now - due).total_seconds() // 60)
        names = ", ".join(f'"{rule.name}"' for rule, _ in matches)
        reason += f" ({late} min late)" + (f"; rules {names}" if names else "")
        escalation = _escalation_record(
            conversation,
            kind=Escalation.Kind.SLA_BREACH,
            rule=matches[0][0] if matches else None,
            reason=reason,
            matched={"sla_breach": True, "due_at": due.isoformat(), "target": target},
            breach_due_at=due,
            to_team=conversation.team,
            from_team=from_team,
            from_user=from_user,
        )
        events.append(f"escalated to {conversation.team.name}: {reason}")
        if any(rule.actions.get("notify_supervisors") for rule, _ in matches):
            events.append(_notify_supervisors(escalation, conversation.team))
        for rule, _ in matches:
            if rule.actions.get("auto_reply_template"):
                events.append(_auto_reply(conversation, escalation, rule))
                break  # one escalation carries one auto-reply
        conversation.save(update_fields=_CONVERSATION_FIELDS)
        _record_events(
            conversation,
            events,
            metadata={"decision": "sla_breach", "escalation": str(escalation.pk)},
        )
    return escalation


class EscalationRefused(Exception):
    def __init__(self, message, *, code):
        super().__init__(message)
        self.code = code


def escalation_manual_create(*, conversation, actor, reason, to_team=None, priority=None):
    """A staff member escalates by hand, with a reason; the target team's supervisors
    are notified."""
    with transaction.atomic():
        conversation = _locked_conversation(conversation.pk)
        if conversation.status == Conversation.Status.RESOLVED:
            raise EscalationRefused(
                "A resolved conversation cannot be escalated; reopen it first.",
                code="conversation_resolved",
            )
        from_team, from_user = conversation.team, conversation.assignee_id
        metadata = {"decision": "manual_escalation"}
        _raise_priority(conversation, priority, "manual escalation", metadata, actor=actor)
        events = []
        target = to_team or conversation.team
        if target.pk != conversation.team_id or conversation.assignee_id is None:
            events.append(_route_locked(conversation, team=target, metadata=metadata).unrecorded)
        escalation = _escalation_record(
            conversation,
            kind=Escalation.Kind.MANUAL,
            reason=reason,
            matched={},
            to_team=conversation.team,
            from_team=from_team,
            from_user=from_user,
            created_by=actor,
        )
        events.append(f"{actor.get_username()} escalated to {conversation.team.name}: {reason}")
        events.append(_notify_supervisors(escalation, conversation.team))
        conversation.save(update_fields=_CONVERSATION_FIELDS)
        _record_events(
            conversation,
            events,
            actor=actor,
            metadata={"decision": "manual_escalation", "escalation": str(escalation.pk)},
        )
    return escalation


def escalation_acknowledge(*, escalation, actor):
    """The receiver has it in hand. The conversation stays flagged while any of its
    escalations is still unacknowledged."""
    with transaction.atomic():
        now = timezone.now()
        taken = Escalation.objects.filter(pk=escalation.pk, acknowledged_at__isnull=True).update(
            acknowledged_by=actor, acknowledged_at=now
        )
        if not taken:
            raise EscalationRefused(
                "This escalation was already acknowledged.", code="already_acknowledged"
            )
        Notification.objects.filter(escalation=escalation, user=actor, read_at=None).update(
            read_at=now
        )
        conversation = Conversation.objects.select_for_update().get(pk=escalation.conversation_id)
        still_open = Escalation.objects.filter(
            conversation=conversation, acknowledged_at__isnull=True
        ).exists()
        if not still_open and conversation.escalated:
            conversation.escalated = False
            conversation.save(update_fields=["escalated", "updated_at"])
        event_record(
            conversation=conversation,
            text=f"{actor.get_username()} acknowledged the escalation",
            actor=actor,
            metadata={"decision": "acknowledge", "escalation": str(escalation.pk)},
        )
    escalation.refresh_from_db()
    return escalation


def escalations_move_patient(*, survivor, duplicate):
    """Receiver of patients_merged (inside the merge's transaction)."""
    return Escalation.objects.filter(patient=duplicate).update(patient=survivor)
