"""Reads for supervisors: the team board (each member's availability, load and
last activity; queue sizes; SLA breaches and the conversations closest to one;
open escalations) and the rules' dry run over past messages. Every list is
bounded, and each costs a fixed number of queries whatever its length."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from channels_app.models import Conversation, Interaction
from channels_app.selectors import conversations_visible_to
from compliance.models import AuditEvent
from contactcenter.models import StaffProfile, Team
from escalation import rules as rule_logic
from escalation.models import Escalation, EscalationRule
from escalation.selectors import business_calendar_for, message_facts
from escalation.sentiment import score_text

User = get_user_model()
DEFAULT_CAPACITY = StaffProfile._meta.get_field("capacity").default

BOARD_ROWS = 25
ESCALATION_ROWS = 25
# How far back acknowledged escalations stay on the board, with who took them.
ACKNOWLEDGED_SHOWN = timedelta(hours=24)
DRY_RUN_DAYS = 7
# A dry run reads at most this many messages (newest first) and says so.
DRY_RUN_MAX_MESSAGES = 20_000
_TEXT_KINDS = (Interaction.Kind.MESSAGE, Interaction.Kind.VOICEMAIL)


def team_members_board(*, team_ids):
    """[{user, username, teams, availability, capacity, active, assigned,
    last_activity}] for the active staff of these teams, by username. `active`
    counts open and pending conversations assigned to them, `assigned` every
    unresolved one (snoozed ones come back: routing counts them against
    capacity). Last activity is their latest audited request (every page and
    API call writes one), read through the (actor, recorded_at) index."""
    last_activity = (
        AuditEvent.objects.filter(actor_user_id=OuterRef("pk"))
        .order_by("-recorded_at")
        .values("recorded_at")[:1]
    )
    members = list(
        User.objects.filter(groups__team__in=team_ids, is_active=True)
        .distinct()
        .annotate(last_activity=Subquery(last_activity))
        .order_by("username")
        .values("pk", "username", "last_activity")
    )
    ids = [member["pk"] for member in members]
    profiles = {
        row["user_id"]: row
        for row in StaffProfile.objects.filter(user_id__in=ids).values(
            "user_id", "availability", "capacity"
        )
    }
    loads = {
        row["assignee_id"]: row
        # Every status but resolved, named: ranges of the (assignee, status) index.
        for row in Conversation.objects.filter(
            assignee_id__in=ids,
            status__in=[s for s in Conversation.Status.values if s != Conversation.Status.RESOLVED],
        )
        .values("assignee_id")
        .annotate(
            assigned=Count("pk"),
            active=Count("pk", filter=Q(status__in=list(Conversation.ACTIVE_STATUSES))),
        )
    }
    teams = {}
    for user_id, team_id, name in (
        Team.objects.filter(pk__in=team_ids, group__user__in=ids)
        .order_by("name")
        .values_list("group__user", "pk", "name")
    ):
        teams.setdefault(user_id, []).append((team_id, name))
    board = []
    for member in members:
        profile = profiles.get(member["pk"], {})
        load = loads.get(member["pk"], {})
        board.append(
            {
                "id": member["pk"],
                "username": member["username"],
                "teams": [name for _id, name in teams.get(member["pk"], [])],
                "team_ids": [team_id for team_id, _name in teams.get(member["pk"], [])],
                "availability": profile.get("availability", StaffProfile.Availability.AWAY),
                "capacity": profile.get("capacity", DEFAULT_CAPACITY),
                "active": load.get("active", 0),
                "assigned": load.get("assigned", 0),
                "last_activity": member["last_activity"],
            }
        )
    return board


def queue_sizes(*, team_ids):
    """[{channel, active, unassigned, escalated, breached}] of the teams' open and
    pending conversations per channel, counted by the database."""
    now = timezone.now()
    return list(
        Conversation.objects.filter(
            team_id__in=team_ids, status__in=list(Conversation.ACTIVE_STATUSES)
        )
        .values("channel")
        .annotate(
            active=Count("pk"),
            unassigned=Count("pk", filter=Q(assignee__isnull=True)),
            escalated=Count("pk", filter=Q(escalated=True)),
            breached=Count("pk", filter=_breached_q(now)),
        )
        .order_by("channel")
    )


def _breached_q(now):
    return Q(sla_due_at__lte=now) | Q(resolution_due_at__lte=now) | Q(callback_due_at__lte=now)


def _board_conversations(queryset):
    return queryset.select_related("patient", "assignee", "team").only(
        "id",
        "channel",
        "status",
        "priority",
        "escalated",
        "sla_due_at",
        "resolution_due_at",
        "callback_due_at",
        "last_interaction_at",
        "contact_address",
        "team__name",
        "team__id",
        "assignee__username",
        "patient__id",
        "patient__given_name",
        "patient__family_name",
    )


def sla_watch(*, team_ids, now=None, limit=BOARD_ROWS):
    """(breached count, [conversations]): the teams' active conversations with a
    response owed, the breached first (most overdue first), then those closest to
    their due time. Each carries `sla_remaining`: seconds of the team's business
    time left (negative once overdue, in wall-clock time). Walks the partial
    index (team, sla_due_at, id)."""
    now = now or timezone.now()
    active = Conversation.objects.filter(
        team_id__in=team_ids,
        status__in=list(Conversation.ACTIVE_STATUSES),
    )
    breached = active.filter(_breached_q(now)).count()
    rows = list(
        _board_conversations(active.filter(sla_due_at__isnull=False)).order_by("sla_due_at", "id")[
            :limit
        ]
    )
    calendars = {}
    for row in rows:
        if row.team_id not in calendars:
            calendars[row.team_id] = business_calendar_for(team_id=row.team_id)
        calendar = calendars[row.team_id]
        if row.sla_due_at <= now:
            row.sla_remaining = -(now - row.sla_due_at).total_seconds()
        elif calendar is None:
            row.sla_remaining = (row.sla_due_at - now).total_seconds()
        else:
            row.sla_remaining = calendar.business_time_between(now, row.sla_due_at).total_seconds()
    return breached, rows


def escalations_board(*, user, team_ids, now=None, limit=ESCALATION_ROWS):
    """Escalations to these teams on conversations the user may see: the open
    (unacknowledged) ones, and those acknowledged in the last 24 hours with who
    took them, newest first."""
    now = now or timezone.now()
    visible = conversations_visible_to(user).filter(pk=OuterRef("conversation_id"))
    return list(
        Escalation.objects.filter(to_team_id__in=team_ids)
        .filter(Exists(visible))
        .filter(Q(acknowledged_at__isnull=True) | Q(acknowledged_at__gte=now - ACKNOWLEDGED_SHOWN))
        .select_related(
            "rule",
            "to_team",
            "acknowledged_by",
            "conversation",
            "conversation__patient",
            "conversation__assignee",
        )
        .order_by(F("acknowledged_at").desc(nulls_first=True), "-created_at", "-id")[:limit]
    )


# --- Dry run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunHit:
    interaction_id: object
    occurred_at: object
    conversation: Conversation
    rule: EscalationRule
    reason: str


@dataclass(frozen=True)
class DryRun:
    since: object
    until: object
    messages: int
    truncated: bool
    hits: list
    per_rule: dict
    breach_rules: list


def rules_dry_run(*, user, rules, now=None, days=DRY_RUN_DAYS):
    """Which of the last `days` days' inbound messages these rules would have
    escalated, and why, without writing anything: each message of a conversation
    the user may see is tested as interaction_process tests it (the same facts;
    its stored sentiment, or the score it would get; repeat contacts counted as
    of when it arrived). Rules about SLA breaches have no message to test and are
    returned apart. Hits are newest first."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    message_rules = [rule for rule in rules if not rule.conditions.get("no_response_within_sla")]
    breach_rules = [rule for rule in rules if rule.conditions.get("no_response_within_sla")]
    messages = (
        Interaction.objects.filter(
            direction=Interaction.Direction.INBOUND,
            kind__in=_TEXT_KINDS,
            occurred_at__gte=since,
            occurred_at__lt=now,
            conversation__in=conversations_visible_to(user).values("pk"),
        )
        .select_related("conversation", "conversation__patient", "conversation__team")
        .order_by("-occurred_at", "-id")
    )
    hits = []
    read = 0
    per_rule = {rule.pk: 0 for rule in message_rules}
    if message_rules:
        for interaction in messages[: DRY_RUN_MAX_MESSAGES + 1].iterator(chunk_size=500):
            read += 1
            if read > DRY_RUN_MAX_MESSAGES:
                break
            text = interaction.body or ""
            if not text.strip():
                continue
            sentiment = interaction.sentiment
            if sentiment is None:
                sentiment = score_text(text)
            facts = message_facts(
                conversation=interaction.conversation,
                text=text,
                sentiment=sentiment,
                now=interaction.occurred_at,
            )
            for rule in message_rules:
                match = rule_logic.evaluate(rule.conditions, facts)
                if match is None:
                    continue
                per_rule[rule.pk] += 1
                hits.append(
                    DryRunHit(
                        interaction_id=interaction.pk,
                        occurred_at=interaction.occurred_at,
                        conversation=interaction.conversation,
                        rule=rule,
                        reason=f'Rule "{rule.name}": {match.describe()}',
                    )
                )
    return DryRun(
        since=since,
        until=now,
        messages=min(read, DRY_RUN_MAX_MESSAGES),
        truncated=read > DRY_RUN_MAX_MESSAGES,
        hits=hits,
        per_rule=per_rule,
        breach_rules=breach_rules,
    )
