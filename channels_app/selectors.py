"""Reads for the unified inbox, conversations and the patient timeline.

Conversations are granted to the group of the team that owns them, so "visible"
is the same set as "in one of my teams". The inbox filters on the caller's team
ids (one small query first) because that is the form PostgreSQL can drive the
partial index (team, last_interaction_at desc, id desc) with; single objects go
through the guardian permission table like every other PHI object.
"""

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q

from channels_app.models import (
    Conversation,
    ConversationGroupObjectPermission,
    ConversationRead,
    Interaction,
)
from contactcenter.access import visible_to
from contactcenter.auth import ApiClientPrincipal
from contactcenter.models import Team

VIEW_CONVERSATION = "view_conversation"
INBOX_ROW_COLUMNS = (
    "id",
    "channel",
    "status",
    "priority",
    "patient_id",
    "contact_address",
    "assignee_id",
    "team_id",
    "labels",
    "escalated",
    "last_interaction_at",
    "last_direction",
    "last_preview",
    "first_response_due_at",
    "next_response_due_at",
    "sla_due_at",
    "patient__given_name",
    "patient__family_name",
    "patient__team",
    "assignee__username",
)
TIMELINE_COLUMNS = (
    "id",
    "conversation_id",
    "patient_id",
    "channel",
    "kind",
    "direction",
    "body",
    "author_id",
    "occurred_at",
    "sentiment",
    "author__username",
    "outbound__state",
    "outbound__last_error",
)


def team_ids_of(user):
    """The user's team ids, read once per request (kept on the user object)."""
    if isinstance(user, ApiClientPrincipal):
        return [user.client.team_id] if user.client.team_id else None
    cached = getattr(user, "_team_ids_cache", None)
    if cached is None:
        cached = list(Team.objects.filter(group__user=user).values_list("pk", flat=True))
        user._team_ids_cache = cached
    return cached


def conversations_visible_to(user, *, queryset=None):
    base = Conversation.objects.all() if queryset is None else queryset
    return visible_to(
        user=user,
        queryset=base,
        perm_model=ConversationGroupObjectPermission,
        codename=VIEW_CONVERSATION,
    )


def _unread_for(user):
    """True when something happened after the user last read the conversation."""
    read_since = ConversationRead.objects.filter(
        conversation=OuterRef("pk"), user=user, last_read_at__gte=OuterRef("last_interaction_at")
    )
    return ~Exists(read_since)


def inbox_list(
    *,
    user,
    statuses=None,
    assignee=None,
    team_id=None,
    channel=None,
    priority=None,
    patient_id=None,
    label=None,
    escalated=None,
    unmatched=None,
    updated_since=None,
    sort="last_interaction",
):
    """The unified inbox across channels. `assignee` is "me", "unassigned" or a
    user id; statuses default to open and pending."""
    team_ids = team_ids_of(user)
    queryset = Conversation.objects.all()
    if team_ids is not None:
        queryset = queryset.filter(team_id__in=team_ids)
    queryset = queryset.filter(status__in=statuses or list(Conversation.ACTIVE_STATUSES))
    if assignee == "me":
        queryset = queryset.filter(assignee=user)
    elif assignee == "unassigned":
        queryset = queryset.filter(assignee__isnull=True)
    elif assignee:
        queryset = queryset.filter(assignee_id=assignee)
    if team_id:
        queryset = queryset.filter(team_id=team_id)
    if channel:
        queryset = queryset.filter(channel=channel)
    if priority is not None:
        queryset = queryset.filter(priority=priority)
    if patient_id:
        queryset = queryset.filter(patient_id=patient_id)
    if label:
        if connection.vendor == "postgresql":
            queryset = queryset.filter(labels__contains=[label])
        else:
            # SQLite (local development) has no JSON containment; match the
            # quoted element in the stored JSON text instead.
            queryset = queryset.filter(labels__icontains=f'"{label}"')
    if escalated is not None:
        queryset = queryset.filter(escalated=escalated)
    if unmatched is not None:
        queryset = queryset.filter(patient__isnull=unmatched)
    if updated_since:
        queryset = queryset.filter(last_interaction_at__gte=updated_since)
    if not isinstance(user, ApiClientPrincipal):
        queryset = queryset.annotate(unread=_unread_for(user))
    # Only what an inbox row shows: every timestamp column loaded costs Python
    # time per row, and a page is fifty rows.
    return queryset.select_related("patient", "assignee").only(*INBOX_ROW_COLUMNS)


def inbox_counts(*, user):
    """Counts per tab in one aggregate over the caller's teams' active
    conversations: counted by the database, never loaded."""
    team_ids = team_ids_of(user) or []
    active = Conversation.objects.filter(
        team_id__in=team_ids, status__in=list(Conversation.ACTIVE_STATUSES)
    )
    # Counting team_id (never null) reads only columns of the partial index
    # conv_team_active_counts_idx: an index-only scan. Counting "pk" reads the table.
    counts = active.aggregate(
        my_teams=Count("team_id"),
        unassigned=Count("team_id", filter=Q(assignee__isnull=True)),
        escalated=Count("team_id", filter=Q(escalated=True)),
    )
    counts["mine"] = Conversation.objects.filter(
        assignee=user, status__in=list(Conversation.ACTIVE_STATUSES)
    ).count()
    return counts


def conversation_get_visible(*, user, conversation_id):
    return (
        conversations_visible_to(user)
        .select_related("patient", "assignee", "team", "account")
        .filter(pk=conversation_id)
        .first()
    )


def conversation_messages(*, conversation):
    return Interaction.objects.filter(conversation=conversation).select_related(
        "author", "outbound"
    )


def patient_timeline(*, patient, channel=None, direction=None, kind=None, since=None, until=None):
    queryset = Interaction.objects.filter(patient=patient)
    if channel:
        queryset = queryset.filter(channel=channel)
    if direction:
        queryset = queryset.filter(direction=direction)
    if kind:
        queryset = queryset.filter(kind=kind)
    if since:
        queryset = queryset.filter(occurred_at__gte=since)
    if until:
        queryset = queryset.filter(occurred_at__lt=until)
    return queryset.select_related("author", "outbound").only(*TIMELINE_COLUMNS)
