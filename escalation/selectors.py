"""Reads for escalation: who is in a team, how loaded they are, which escalations a
user may see, and the handoff context of a conversation."""

import functools
from datetime import timedelta
from types import MappingProxyType

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from channels_app.models import Conversation, Interaction
from channels_app.selectors import conversations_visible_to, team_ids_of
from contactcenter import roles, sql
from contactcenter.models import StaffProfile, Team
from contactcenter.process_copy import ProcessCopy
from escalation import rules as rule_logic
from escalation.models import BusinessHours, Escalation, EscalationRule, SlaPolicy
from patients.models import Appointment

User = get_user_model()

PREVIEW_LENGTH = 120
SUMMARY_MESSAGES = 10
SUMMARY_APPOINTMENTS = 5
SUMMARY_CONVERSATIONS = 10


def clinical_team():
    return Team.objects.filter(is_clinical=True).order_by("pk").first()


def team_members(*, team, supervisors_only=False):
    """Active users of the team; with supervisors_only, those in the supervisor role."""
    members = User.objects.filter(groups=team.group, is_active=True)
    if supervisors_only:
        members = members.filter(groups__name=roles.SUPERVISOR)
    return members


@functools.cache
def _team_member_ids_statement():
    quote = connection.ops.quote_name
    memberships = User.groups.through._meta
    return (
        f"SELECT u.{quote(User._meta.pk.column)} FROM {quote(User._meta.db_table)} u "  # noqa: S608
        f"JOIN {quote(memberships.db_table)} m "
        f"ON m.{quote(memberships.get_field('user').column)} = u.{quote(User._meta.pk.column)} "
        f"WHERE m.{quote(memberships.get_field('group').column)} = %s "
        f"AND u.{quote(User._meta.get_field('is_active').column)}"
    )


def team_member_ids(*, team):
    """The ids of team_members(team=team), by a fixed statement: routing reads them
    for every inbound message, and compiling the QuerySet cost more than running it."""
    rows = sql.fetch(_team_member_ids_statement(), [team.group_id], [None])
    return [row[0] for row in rows]


def open_load(*, user_ids):
    """Conversations assigned to each user that are not resolved (snoozed ones come
    back, so they count against capacity)."""
    rows = (
        Conversation.objects.filter(assignee_id__in=user_ids)
        .exclude(status=Conversation.Status.RESOLVED)
        .values("assignee_id")
        .annotate(load=Count("pk"))
    )
    return {row["assignee_id"]: row["load"] for row in rows}


def open_load_of(*, user_id):
    return (
        Conversation.objects.filter(assignee_id=user_id)
        .exclude(status=Conversation.Status.RESOLVED)
        .count()
    )


def available_profiles(*, user_ids):
    return StaffProfile.objects.filter(
        user_id__in=user_ids, availability=StaffProfile.Availability.AVAILABLE
    )


# Read for every inbound message, changed a few times a year: kept in each process
# (contactcenter.process_copy; a change reaches every worker within a second). The
# rows are shared by every message the process handles, so nothing may change them.
_active_rules = ProcessCopy(
    "escalation_rules", lambda: tuple(sql.get_all(EscalationRule, active=True))
).watch(EscalationRule)
_sla_policies = ProcessCopy(
    "sla_policies",
    lambda: MappingProxyType({policy.priority: policy for policy in SlaPolicy.objects.all()}),
).watch(SlaPolicy)


def active_rules():
    """The active escalation rules, in their order (order, then id)."""
    return _active_rules.get()


def sla_policy_for(*, priority):
    return _sla_policies.get().get(priority)


def business_calendar_for(*, team_id):
    """The team's calendar, or None for a team that works around the clock."""
    hours = BusinessHours.objects.filter(team_id=team_id).first()
    return hours.calendar() if hours else None


def escalations_open_for(*, user):
    """Unacknowledged escalations to the user's teams, on conversations they may see."""
    visible = conversations_visible_to(user).filter(pk=OuterRef("conversation_id"))
    return (
        Escalation.objects.filter(
            to_team_id__in=team_ids_of(user) or [], acknowledged_at__isnull=True
        )
        .filter(Exists(visible))
        .select_related("rule", "to_team", "from_team", "to_user", "from_user", "conversation")
    )


def escalation_get_visible(*, user, escalation_id):
    visible = conversations_visible_to(user).filter(pk=OuterRef("conversation_id"))
    return (
        Escalation.objects.filter(pk=escalation_id, to_team_id__in=team_ids_of(user) or [])
        .filter(Exists(visible))
        .select_related("conversation")
        .first()
    )


def inbound_contacts_since_resolution(*, conversation, days, now=None):
    """Inbound contacts of the patient (of the conversation when unmatched) in the last
    `days` days and since their last resolved conversation."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    if conversation.patient_id is None:
        interactions = Interaction.objects.filter(conversation_id=conversation.pk)
    else:
        last_resolved = Conversation.objects.filter(
            patient_id=conversation.patient_id, resolved_at__isnull=False
        ).aggregate(at=Max("resolved_at"))["at"]
        if last_resolved is not None:
            since = max(since, last_resolved)
        interactions = Interaction.objects.filter(patient_id=conversation.patient_id)
    return interactions.filter(
        direction=Interaction.Direction.INBOUND, occurred_at__gt=since, occurred_at__lte=now
    ).count()


def message_facts(*, conversation, text, sentiment, now=None):
    """What the rules are tested against for a message of this conversation: the
    processing of an arriving message (now: the present) and the supervisors'
    dry run (now: when the message arrived) build them alike."""
    patient = conversation.patient
    return rule_logic.Facts(
        channel=conversation.channel,
        patient_flags=frozenset(patient.flags if patient else ()),
        text=text,
        sentiment=sentiment,
        contacts_within=lambda days: inbound_contacts_since_resolution(
            conversation=conversation, days=days, now=now
        ),
    )


def _preview(text):
    flat = " ".join((text or "").split())
    return flat if len(flat) <= PREVIEW_LENGTH else flat[: PREVIEW_LENGTH - 1] + "…"


def context_summary(*, conversation, now=None):
    """What the receiver of an escalation reads first, so the patient never repeats
    themselves: their last messages on every channel, the sentiment trend, upcoming
    appointments, other open conversations and flags. Holds PHI (previews): it is
    stored encrypted."""
    now = now or timezone.now()
    patient = conversation.patient
    if patient is not None:
        interactions = Interaction.objects.filter(patient=patient)
    else:
        interactions = Interaction.objects.filter(conversation=conversation)
    recent = list(
        interactions.exclude(kind=Interaction.Kind.EVENT)
        .order_by("-occurred_at", "-id")
        .only(
            "id",
            "conversation_id",
            "channel",
            "kind",
            "direction",
            "body",
            "occurred_at",
            "sentiment",
        )[:SUMMARY_MESSAGES]
    )
    messages = [
        {
            "id": str(item.pk),
            "conversation": str(item.conversation_id),
            "channel": item.channel,
            "kind": item.kind,
            "direction": item.direction,
            "occurred_at": item.occurred_at.isoformat(),
            "preview": _preview(item.body),
            "sentiment": item.sentiment,
        }
        for item in recent
    ]
    trend = [
        {"occurred_at": item.occurred_at.isoformat(), "sentiment": item.sentiment}
        for item in reversed(recent)
        if item.direction == Interaction.Direction.INBOUND and item.sentiment is not None
    ]
    summary = {
        "patient": str(patient.pk) if patient else None,
        "flags": patient.flags if patient else [],
        "last_messages": messages,
        "sentiment": {
            "first": conversation.sentiment_first,
            "latest": conversation.sentiment_latest,
            "trend": trend,
        },
        "upcoming_appointments": [],
        "open_conversations": [],
    }
    if patient is None:
        return summary
    summary["upcoming_appointments"] = [
        {
            "id": str(appointment.pk),
            "starts_at": appointment.starts_at.isoformat(),
            "provider_name": appointment.provider_name,
            "location": appointment.location,
            "status": appointment.status,
        }
        for appointment in Appointment.objects.filter(
            patient=patient,
            starts_at__gt=now,
            status__in=[Appointment.Status.BOOKED, Appointment.Status.CONFIRMED],
        ).order_by("starts_at")[:SUMMARY_APPOINTMENTS]
    ]
    summary["open_conversations"] = [
        {
            "id": str(other.pk),
            "channel": other.channel,
            "status": other.status,
            "priority": other.get_priority_display(),
            "team": other.team_id,
            "escalated": other.escalated,
            "last_interaction_at": other.last_interaction_at.isoformat(),
        }
        for other in Conversation.objects.filter(patient=patient)
        .exclude(status=Conversation.Status.RESOLVED)
        .filter(~Q(pk=conversation.pk))
        .order_by("-last_interaction_at")
        .only("id", "channel", "status", "priority", "team_id", "escalated", "last_interaction_at")[
            :SUMMARY_CONVERSATIONS
        ]
    ]
    return summary


# The SLA targets a conversation can breach: a response owed (the earlier of first
# and next response, kept in sla_due_at) and its resolution.
# A promised callback's window (channels_app's Callback) is a target like a response.
BREACH_TARGETS = ("sla_due_at", "resolution_due_at", "callback_due_at")


def conversations_in_breach(*, now, limit):
    """(id, due field) of active conversations with an overdue SLA target whose
    breach was not escalated yet, most overdue first. Each target's query is driven
    by its own partial index."""
    found = []
    for due_field in BREACH_TARGETS:
        escalated = Escalation.objects.filter(
            conversation_id=OuterRef("pk"),
            kind=Escalation.Kind.SLA_BREACH,
            breach_due_at=OuterRef(due_field),
        )
        overdue = (
            Conversation.objects.filter(
                status__in=list(Conversation.ACTIVE_STATUSES), **{f"{due_field}__lte": now}
            )
            .filter(~Exists(escalated))
            .order_by(due_field, "id")
            .values_list(due_field, "pk")[:limit]
        )
        found += [(due, pk, due_field) for due, pk in overdue]
    found.sort()
    return [(pk, due_field) for _, pk, due_field in found[:limit]]


def open_escalation_reasons(*, conversation_ids, full=False):
    """Unacknowledged escalations of these conversations in one query, newest
    first: {conversation id: reason of the newest}, or with full=True
    {conversation id: [escalations]}, for the workspace's rows and thread."""
    if not conversation_ids:
        return {}
    escalations = Escalation.objects.filter(
        conversation_id__in=conversation_ids, acknowledged_at__isnull=True
    ).order_by("-created_at", "-id")
    if not full:
        escalations = escalations.only("id", "conversation_id", "reason")
    found = {}
    for escalation in escalations:
        if full:
            found.setdefault(escalation.conversation_id, []).append(escalation)
        else:
            found.setdefault(escalation.conversation_id, escalation.reason)
    return found
