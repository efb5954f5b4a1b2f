"""Reads for the unified inbox, conversations and the patient timeline.

Access is the one rule of compliance.access: conversations_visible_to() applies
it; the inbox takes its team half as team ids (`team_ids_of`), the form
PostgreSQL can drive the partial index (team, last_interaction_at desc, id desc)
with; the timeline takes it compiled into its statement (`patient_visible_sql`).
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from channels_app.models import (
    Callback,
    CallDetail,
    Conversation,
    ConversationGroupObjectPermission,
    ConversationRead,
    DeliveryAttempt,
    Interaction,
    VoiceMenuChoice,
)
from compliance.access import records_visible_to, team_ids_of
from contactcenter import sql
from contactcenter.keyset import KeysetPagination, Page, PageRequest
from patients.models import Appointment, Patient
from patients.selectors import patient_visible_sql, patients_visible_to

VIEW_CONVERSATION = "view_conversation"


def conversations_visible_to(user, *, queryset=None):
    """Conversations the user may see, by the one access rule (compliance.access):
    their teams' and those of a patient they hold an unexpired break-glass grant
    for."""
    return records_visible_to(
        user,
        queryset=Conversation.objects.all() if queryset is None else queryset,
        perm_model=ConversationGroupObjectPermission,
        codename=VIEW_CONVERSATION,
        patient_field="patient_id",
    )


def local_outbox_visible_to(user):
    """Local outbox messages of the conversations the user may see (a message
    whose delivery record is not known yet is not shown)."""
    from channels_app.models import LocalOutboxMessage

    visible = conversations_visible_to(user).values("pk")
    return LocalOutboxMessage.objects.filter(outbound__interaction__conversation__in=visible)


# Tab counts stop here: a team with more active conversations than this reads
# "999+" (the count is INBOX_COUNT_CAP + 1 and the tab is named in `capped`).
INBOX_COUNT_CAP = 999


def inbox_counts(*, user):
    """Counts per tab, each exact up to INBOX_COUNT_CAP and capped above it, in one
    statement of four bounded subqueries: each reads at most CAP + 1 entries of an
    index (conv_team_active_counts_idx for the team tabs, its unassigned prefix,
    conv_team_escalated_idx, conv_assignee_status_idx for mine), so a team with
    200k open conversations costs what one with 2k does. Nothing is loaded. The
    statement is written out rather than compiled from four QuerySets per request,
    which cost more than running it (bench/inbox_timeline.py)."""
    # Written in, not parameters: the partial indexes are on the active statuses.
    active = (f"c.status IN {sql.constant_in_list(Conversation.ACTIVE_STATUSES)}", [])
    team_ids = team_ids_of(user) or []
    # No team: the team tabs count nothing (an empty IN list is not SQL).
    teams = (f"c.team_id IN {sql.in_list(team_ids)}", team_ids) if team_ids else ("1 = 0", [])
    tabs = {
        "mine": [active, ("c.assignee_id = %s", [user.pk])],
        "unassigned": [active, teams, ("c.assignee_id IS NULL", [])],
        "my_teams": [active, teams],
        "escalated": [active, teams, ("c.escalated", [])],
    }
    table = connection.ops.quote_name(Conversation._meta.db_table)
    parts, params = [], []
    for name, conditions in tabs.items():
        # Selecting team_id (never null) keeps each scan index-only.
        where = " AND ".join(condition for condition, _ in conditions)
        parts.append(
            f"(SELECT COUNT(*) FROM (SELECT c.team_id FROM {table} c WHERE {where} "
            f"LIMIT %s) {name}_rows) AS {name}"
        )
        for _, values in conditions:
            params.extend(values)
        params.append(INBOX_COUNT_CAP + 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    counts = dict(zip(tabs, row, strict=True))
    counts["capped"] = [name for name, value in counts.items() if value > INBOX_COUNT_CAP]
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


# --- The inbox and the timeline: hand-written SQL on the hot path ----------------
#
# Both lists are read many times a minute by every agent, so each page is one
# fixed statement (contactcenter.sql) with the access rule inside it, paged by
# keyset (contactcenter.keyset), its rows decrypted and returned as plain dicts.
# bench/inbox_timeline.py measures them against the same SQL run by hand.

_conversation_field = Conversation._meta.get_field
_interaction_field = Interaction._meta.get_field
INBOX_COLUMNS = (
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
)
INBOX_SORTS = {
    # name: (sort column, newest first?)
    "last_interaction": ("last_interaction_at", True),
    "sla_due": ("sla_due_at", False),
}


@dataclass(frozen=True)
class InboxFilters:
    """What the inbox may be filtered by; `assignee` is "me", "unassigned" or a
    user id, and the statuses default to the active ones (open and pending)."""

    statuses: tuple = tuple(Conversation.ACTIVE_STATUSES)
    assignee: str | None = None
    team_id: int | None = None
    channel: str | None = None
    priority: int | None = None
    patient_id: object = None
    label: str | None = None
    escalated: bool | None = None
    unmatched: bool | None = None
    updated_since: datetime | None = None
    sort: str = "last_interaction"


@dataclass(frozen=True)
class TimelineFilters:
    channel: str | None = None
    direction: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _keyset_sql(alias, sort_column, *, descending, page, model):
    """(keyset condition and its params, fetch direction) for a page: rows after
    the cursor in list order, or before it when paging backwards."""
    fetch_descending = descending != bool(page.cursor and page.cursor.backwards)
    if page.cursor is None:
        return "", [], fetch_descending
    stamp, row_id = page.cursor.key
    operator = "<" if fetch_descending else ">"
    meta = model._meta
    return (
        f" AND ({alias}.{sort_column}, {alias}.id) {operator} (%s, %s)",
        [sql.param(meta.get_field(sort_column), stamp), sql.param(meta.pk, row_id)],
        fetch_descending,
    )


def _order_sql(alias, sort_column, *, descending):
    direction = "DESC" if descending else "ASC"
    return f"{alias}.{sort_column} {direction}, {alias}.id {direction}"


def _inbox_conditions(*, user, filters):
    """The WHERE conditions (after the team) shared by every team's branch."""
    # Written in, not parameters (validated choices): the partial indexes the
    # branches walk are on the active statuses.
    conditions = [f"c.status IN {sql.constant_in_list(filters.statuses)}"]
    params = []
    if filters.assignee == "me":
        conditions.append("c.assignee_id = %s")
        params.append(user.pk)
    elif filters.assignee == "unassigned":
        conditions.append("c.assignee_id IS NULL")
    elif filters.assignee:
        conditions.append("c.assignee_id = %s")
        params.append(int(filters.assignee))
    for column, value in (
        ("channel", filters.channel),
        ("priority", filters.priority),
        ("escalated", filters.escalated),
    ):
        if value is not None:
            conditions.append(f"c.{column} = %s")
            params.append(value)
    if filters.patient_id:
        conditions.append("c.patient_id = %s")
        params.append(sql.param(_conversation_field("patient"), filters.patient_id))
    if filters.label:
        if connection.vendor == "postgresql":
            conditions.append("c.labels @> %s::jsonb")
            params.append(json.dumps([filters.label]))
        else:
            # SQLite (local development) has no JSON containment: the quoted
            # element in the stored JSON text.
            conditions.append("instr(c.labels, %s) > 0")
            params.append(json.dumps(filters.label))
    if filters.unmatched is not None:
        conditions.append(f"c.patient_id IS {'' if filters.unmatched else 'NOT '}NULL")
    if filters.updated_since:
        conditions.append("c.last_interaction_at >= %s")
        params.append(sql.param(_conversation_field("last_interaction_at"), filters.updated_since))
    if filters.sort == "sla_due":
        conditions.append("c.sla_due_at IS NOT NULL")
    return " AND ".join(conditions), params


def inbox_page(*, user, filters: InboxFilters, page: PageRequest) -> Page:
    """One page of the unified inbox across channels, newest activity first (or
    soonest SLA first), for the caller's teams.

    One statement: a branch per team, each an index range scan of its own
    `LIMIT n + 1` in the order of a partial index (team, sort key, id), merged and
    cut to the page, then joined to the patient's name, the assignee and the
    caller's read marker. An `IN (teams)` instead would read every active row of
    every team and sort them. Rows are dicts of decrypted values; the patient's
    name only when the caller may see that patient."""
    user_team_ids = team_ids_of(user) or []
    team_ids = user_team_ids
    if filters.team_id is not None:
        team_ids = [t for t in team_ids if t == filters.team_id]
    if not team_ids:
        return Page(rows=[], next=None, previous=None)
    sort_column, descending = INBOX_SORTS[filters.sort]
    keyset, keyset_params, fetch_descending = _keyset_sql(
        "c", sort_column, descending=descending, page=page, model=Conversation
    )
    conditions, condition_params = _inbox_conditions(user=user, filters=filters)
    columns = ", ".join(f"c.{column}" for column in INBOX_COLUMNS)
    order = _order_sql("c", sort_column, descending=fetch_descending)
    branches, params = [], []
    for n, team_id in enumerate(team_ids):
        branches.append(
            f"SELECT * FROM (SELECT {columns} FROM {Conversation._meta.db_table} c "
            f"WHERE c.team_id = %s AND {conditions}{keyset} ORDER BY {order} LIMIT %s) AS b{n}"
        )
        params += [team_id, *condition_params, *keyset_params, page.size + 1]
    unread = (
        f"NOT EXISTS (SELECT 1 FROM {ConversationRead._meta.db_table} r "
        "WHERE r.conversation_id = page.id AND r.user_id = %s "
        "AND r.last_read_at >= page.last_interaction_at)"
    )
    statement = (
        f"SELECT {', '.join(f'page.{column}' for column in INBOX_COLUMNS)}, "
        f"p.given_name, p.family_name, p.team_id, u.username, {unread} "
        f"FROM ({' UNION ALL '.join(branches)}) AS page "
        f"LEFT JOIN {Patient._meta.db_table} p ON p.id = page.patient_id "
        f"LEFT JOIN {get_user_model()._meta.db_table} u ON u.id = page.assignee_id "
        f"ORDER BY {_order_sql('page', sort_column, descending=fetch_descending)} LIMIT %s"
    )
    # In the order of the placeholders: the select list's, each branch's, the limit.
    params = [user.pk, *params, page.size + 1]
    patient_field = Patient._meta.get_field
    fields = [_conversation_field(column) for column in INBOX_COLUMNS]
    fields += [patient_field("given_name"), patient_field("family_name"), None, None, None]
    fetched = sql.fetch(statement, params, fields)
    visible = _patients_visible_on_page(user, fetched, user_team_ids=user_team_ids)
    rows = [_inbox_row(values, visible_patient_ids=visible) for values in fetched]
    return KeysetPagination.page_from(
        rows, page=page, key_of=lambda row: (row[sort_column], row["id"])
    )


_PATIENT_COLUMN = INBOX_COLUMNS.index("patient_id")


def _patients_visible_on_page(user, fetched, *, user_team_ids):
    """Patients of the page whose names the caller may see. Patients are granted
    to their team's group, so one of the caller's teams' patients is visible as
    it stands; only the others (a patient who moved team, a break-glass grant)
    cost a query. In the page statement instead, PostgreSQL would hash every
    grant of the caller's groups (15k rows for a big team) to answer fifty."""
    visible, others = set(), set()
    team_column = len(INBOX_COLUMNS) + 2
    for values in fetched:
        patient_id = values[_PATIENT_COLUMN]
        if patient_id is None:
            continue
        if values[team_column] in user_team_ids:
            visible.add(patient_id)
        else:
            others.add(patient_id)
    if others:
        visible.update(patients_visible_to(user).filter(pk__in=others).values_list("pk", flat=True))
    return visible


def _inbox_row(values, *, visible_patient_ids):
    row = dict(zip(INBOX_COLUMNS, values, strict=False))
    given, family, _patient_team, row["assignee_username"], unread = values[len(INBOX_COLUMNS) :]
    conversation_id = row["id"]
    for name in ("contact_address", "last_preview"):
        row[name] = _conversation_field(name).decrypt_stored(row[name], pk=conversation_id)
    patient_id = row["patient_id"]
    row["patient_name"] = (
        Patient.name_for_display(
            Patient._meta.get_field("given_name").decrypt_stored(given, pk=patient_id),
            Patient._meta.get_field("family_name").decrypt_stored(family, pk=patient_id),
        )
        if patient_id in visible_patient_ids
        else None
    )
    row["unread"] = bool(unread)
    row["escalated"] = bool(row["escalated"])
    return row


TIMELINE_COLUMNS = (
    "i.id",
    "i.conversation_id",
    "i.patient_id",
    "i.channel",
    "i.kind",
    "i.direction",
    "i.body",
    "i.occurred_at",
    "i.sentiment",
    "u.username",
    "o.state",
    "o.last_error",
)
_TIMELINE_FIELDS = (
    *(_interaction_field(name) for name in ("id", "conversation", "patient")),
    *(_interaction_field(name) for name in ("channel", "kind", "direction")),
    *(_interaction_field(name) for name in ("body", "occurred_at", "sentiment")),
    None,
    None,
    None,
)


def _interaction_page(*, scope_sql, scope_params, filters, page):
    """Interactions in one scope (a patient, a conversation), newest first,
    through the (scope, occurred_at desc, id desc) index."""
    conditions, params = [scope_sql], list(scope_params)
    for column in ("channel", "direction", "kind"):
        value = getattr(filters, column)
        if value:
            conditions.append(f"i.{column} = %s")
            params.append(value)
    occurred_at = _interaction_field("occurred_at")
    if filters.since:
        conditions.append("i.occurred_at >= %s")
        params.append(sql.param(occurred_at, filters.since))
    if filters.until:
        conditions.append("i.occurred_at < %s")
        params.append(sql.param(occurred_at, filters.until))
    keyset, keyset_params, fetch_descending = _keyset_sql(
        "i", "occurred_at", descending=True, page=page, model=Interaction
    )
    order = _order_sql("i", "occurred_at", descending=fetch_descending)
    outbound = Interaction.outbound.related.related_model._meta.db_table
    statement = (
        f"SELECT {', '.join(TIMELINE_COLUMNS)} FROM {Interaction._meta.db_table} i "
        f"LEFT JOIN {get_user_model()._meta.db_table} u ON u.id = i.author_id "
        f"LEFT JOIN {outbound} o ON o.interaction_id = i.id "
        f"WHERE {' AND '.join(conditions)}{keyset} ORDER BY {order} LIMIT %s"
    )
    params += [*keyset_params, page.size + 1]
    body = _interaction_field("body")
    rows = []
    for values in sql.fetch(statement, params, _TIMELINE_FIELDS):
        row = dict(zip(TIMELINE_COLUMNS, values, strict=True))
        rows.append(
            {
                "id": row["i.id"],
                "conversation_id": row["i.conversation_id"],
                "patient_id": row["i.patient_id"],
                "channel": row["i.channel"],
                "kind": row["i.kind"],
                "direction": row["i.direction"],
                "author": row["u.username"],
                "body": body.decrypt_stored(row["i.body"], pk=row["i.id"]),
                "occurred_at": row["i.occurred_at"],
                "sentiment": row["i.sentiment"],
                "delivery_status": row["o.state"],
                "delivery_error": row["o.last_error"] or None,
            }
        )
    return KeysetPagination.page_from(
        rows, page=page, key_of=lambda row: (row["occurred_at"], row["id"])
    )


def timeline_page(*, user, patient_id, filters: TimelineFilters, page: PageRequest):
    """A page of every interaction of the patient across channels and
    conversations, or None when the caller may not see the patient. The access
    rule is part of the statement; only an empty page costs a second query, to
    tell "nothing here" from "not yours"."""
    visible, visible_params = patient_visible_sql(user, patient_id=patient_id)
    result = _interaction_page(
        scope_sql=f"i.patient_id = %s AND {visible}",
        scope_params=[sql.param(Patient._meta.pk, patient_id), *visible_params],
        filters=filters,
        page=page,
    )
    if not result.rows and not patients_visible_to(user).filter(pk=patient_id).exists():
        return None
    return result


def conversation_messages_page(*, conversation, page: PageRequest, filters=None):
    """A page of one conversation's interactions (its access already checked)."""
    return _interaction_page(
        scope_sql="i.conversation_id = %s",
        scope_params=[sql.param(Conversation._meta.pk, conversation.pk)],
        filters=filters or TimelineFilters(),
        page=page,
    )


@dataclass
class InteractionDetails:
    """What a thread shows besides the text: an email's quoted text and
    attachments (never their bytes), a call's direction, wait, duration,
    recording and transcript."""

    quoted_text: str = ""
    attachments: list = None
    call: CallDetail | None = None


def interaction_details(*, rows):
    """{interaction id: InteractionDetails} for the rows of a thread page (their
    access already checked): one query per kind present on the page (email
    details, attachments, calls), never one per row."""
    from channels_app.models import Attachment, EmailDetail

    email_ids = [r["id"] for r in rows if r["channel"] == "email" and r["kind"] == "message"]
    call_ids = [r["id"] for r in rows if r["kind"] in ("call", "voicemail")]
    details = {}
    if email_ids:
        for email in EmailDetail.objects.filter(interaction_id__in=email_ids).only(
            "interaction_id", "quoted_text"
        ):
            found = details.setdefault(email.interaction_id, InteractionDetails())
            found.quoted_text = email.quoted_text
        for attachment in (
            Attachment.objects.filter(interaction_id__in=email_ids)
            .defer("content")
            .order_by("interaction_id", "filename", "id")
        ):
            found = details.setdefault(attachment.interaction_id, InteractionDetails())
            if found.attachments is None:
                found.attachments = []
            found.attachments.append(attachment)
    if call_ids:
        for call in CallDetail.objects.filter(interaction_id__in=call_ids).only(
            "interaction_id",
            "status",
            "queue_result",
            "queue_wait_seconds",
            "duration_seconds",
            "recording_sid",
            "recording_url",
            "transcript",
        ):
            details.setdefault(call.interaction_id, InteractionDetails()).call = call
    return details


def attachment_get_visible(*, user, attachment_id):
    """An attachment with its bytes when the caller may see its conversation;
    else None."""
    from channels_app.models import Attachment

    return (
        Attachment.objects.filter(
            pk=attachment_id,
            interaction__conversation__in=conversations_visible_to(user),
        )
        .select_related("interaction")
        .first()
    )


def call_get_visible(*, user, interaction_id):
    """A call's details when the caller may see its conversation; else None."""
    return (
        CallDetail.objects.filter(
            interaction_id=interaction_id,
            interaction__conversation__in=conversations_visible_to(user),
        )
        .select_related("interaction")
        .first()
    )


def canned_responses_of(*, conversation):
    """The canned responses of the conversation's team, by title."""
    from channels_app.models import CannedResponse

    return list(CannedResponse.objects.filter(team_id=conversation.team_id).order_by("title"))


def canned_response_text(*, canned, conversation):
    """A canned response with its placeholders filled for this conversation's
    patient ($first_name, $practice_name). Raises ValueError naming a placeholder
    the template has but the context lacks."""
    from django.conf import settings

    from contactcenter.templating import render_template

    patient = conversation.patient
    context = {
        "first_name": patient.given_name if patient else "",
        "practice_name": settings.PRACTICE_NAME,
    }
    return render_template(canned.body, context)


def interactions_page(*, user, filters: TimelineFilters, page: PageRequest):
    """A page of every interaction the caller may see, newest first: an integration
    bound to a team reads its team's conversations (the access rule's team half,
    `team_ids_of`), one of the whole practice every conversation. Walks the
    (occurred_at desc, id desc) index; staff users have the inbox and timelines."""
    team_ids = team_ids_of(user)
    if team_ids is None:
        scope_sql, scope_params = "TRUE", []
    else:
        placeholders = ", ".join(["%s"] * len(team_ids)) or "NULL"
        scope_sql = (
            f"EXISTS (SELECT 1 FROM {Conversation._meta.db_table} c "
            f"WHERE c.id = i.conversation_id AND c.team_id IN ({placeholders}))"
        )
        scope_params = list(team_ids)
    return _interaction_page(
        scope_sql=scope_sql, scope_params=scope_params, filters=filters, page=page
    )


def delivery_attempts_by_interaction(*, interaction_ids):
    """Every delivery attempt of these interactions' deliveries, oldest first, in
    one query: {interaction id: [attempt, ...]}."""
    attempts = {}
    for attempt in (
        DeliveryAttempt.objects.filter(outbound__interaction_id__in=list(interaction_ids))
        .select_related("outbound")
        .only(
            "number",
            "attempted_at",
            "latency_ms",
            "outcome",
            "provider_status",
            "error",
            "outbound__interaction_id",
        )
        .order_by("outbound_id", "number")
    ):
        attempts.setdefault(attempt.outbound.interaction_id, []).append(attempt)
    return attempts


def interaction_in_thread(*, conversation, interaction_id):
    """One interaction of this conversation (its access already checked) as a
    thread row, or None."""
    interaction = (
        Interaction.objects.filter(pk=interaction_id, conversation=conversation)
        .select_related("author", "outbound")
        .first()
    )
    return interaction_row(interaction) if interaction is not None else None


def interaction_get_visible(*, user, interaction_id):
    """One interaction as a timeline row (plus its patient_id), when the caller may
    see its conversation; else None."""
    interaction = (
        Interaction.objects.filter(
            pk=interaction_id, conversation__in=conversations_visible_to(user)
        )
        .select_related("author", "outbound")
        .first()
    )
    if interaction is None:
        return None
    return interaction_row(interaction)


def interaction_row(interaction):
    """An interaction loaded with its author and delivery record, as the dict a
    timeline page holds (plus its patient_id)."""
    outbound = getattr(interaction, "outbound", None)
    return {
        "id": interaction.pk,
        "conversation_id": interaction.conversation_id,
        "patient_id": interaction.patient_id,
        "channel": interaction.channel,
        "kind": interaction.kind,
        "direction": interaction.direction,
        "author": interaction.author.username if interaction.author else None,
        "body": interaction.body,
        "occurred_at": interaction.occurred_at,
        "sentiment": interaction.sentiment,
        "delivery_status": outbound.state if outbound else None,
        "delivery_error": (outbound.last_error or None) if outbound else None,
    }


def interactions_of_patients(*, patient_ids):
    """Every interaction of these patients, for a bulk export (the caller read the
    patients through their access rule). An iterator: rows stream in chunks."""
    return (
        Interaction.objects.filter(patient_id__in=patient_ids)
        .select_related("author", "outbound")
        .order_by("patient_id", "occurred_at", "id")
        .iterator(chunk_size=1000)
    )


def conversations_of_patients(*, patient_ids):
    return Conversation.objects.filter(patient_id__in=patient_ids).order_by("patient_id", "id")


# --- The phone line: menus, team queues, expected waits, callbacks -----------------

# The expected wait is the mean wait of the queue's most recent answered calls,
# within this look-back: a morning rush says nothing about the afternoon.
EXPECTED_WAIT_SAMPLE = 20
EXPECTED_WAIT_LOOKBACK = timedelta(hours=2)


def voice_menu_for(*, account):
    """The number's menu choices by key (at most four), with their teams."""
    return list(VoiceMenuChoice.objects.filter(account=account).select_related("team"))


def queue_expected_wait_seconds(*, team_id, now=None):
    """Mean queue wait of the last answered calls of a team's queue (None without any)."""
    now = now or timezone.now()
    waits = list(
        CallDetail.objects.filter(
            queue_team_id=team_id,
            queue_result=CallDetail.QueueResult.ANSWERED,
            answered_at__gte=now - EXPECTED_WAIT_LOOKBACK,
            answered_at__isnull=False,
            queue_wait_seconds__isnull=False,
        )
        .order_by("-answered_at")
        .values_list("queue_wait_seconds", flat=True)[:EXPECTED_WAIT_SAMPLE]
    )
    return sum(waits) / len(waits) if waits else None


@dataclass(frozen=True)
class QueueEntry:
    """One place in a team's queue: a caller on the line or a callback."""

    kind: str  # "call" or "callback"
    id: str  # the call's interaction id or the callback's id
    conversation_id: str
    queued_at: datetime
    due_at: datetime | None = None


def _waiting_calls(team_id):
    return CallDetail.objects.filter(
        queue_team_id=team_id,
        queue_result=CallDetail.QueueResult.IN_PROGRESS,
        queued_at__isnull=False,
        ended_at__isnull=True,
    )


def _waiting_callbacks(team_id):
    return Callback.objects.filter(team_id=team_id, status=Callback.Status.PENDING)


def team_queue(*, team_id, limit=200):
    """A team's queue in order of arrival: callers waiting on the line and pending
    callbacks, each callback at the place its call had. Two index range scans merged."""
    calls = (
        _waiting_calls(team_id)
        .order_by("queued_at", "interaction_id")
        .values_list("interaction_id", "interaction__conversation_id", "queued_at")[:limit]
    )
    callbacks = (
        _waiting_callbacks(team_id)
        .order_by("queued_at", "id")
        .values_list("id", "conversation_id", "queued_at", "due_at")[:limit]
    )
    entries = [
        QueueEntry("call", str(pk), str(conversation_id), queued_at)
        for pk, conversation_id, queued_at in calls
    ] + [
        QueueEntry("callback", str(pk), str(conversation_id), queued_at, due_at)
        for pk, conversation_id, queued_at, due_at in callbacks
    ]
    return sorted(entries, key=lambda entry: (entry.queued_at, entry.kind == "call", entry.id))[
        :limit
    ]


def queue_position(*, team_id, queued_at):
    """1 + how many callers and callbacks joined the team's queue before this place."""
    ahead = (
        _waiting_calls(team_id).filter(queued_at__lt=queued_at).count()
        + _waiting_callbacks(team_id).filter(queued_at__lt=queued_at).count()
    )
    return ahead + 1


def callback_waiting_for(*, account, phone_index):
    """The callback this number asked for on this line and is still waiting for."""
    return (
        Callback.objects.filter(
            account=account, phone_index=phone_index, status__in=Callback.OPEN_STATUSES
        )
        .select_related("team")
        .first()
    )


def callback_pending_of(*, conversation_id):
    """The conversation's callback waiting in its queue (the earliest), or None."""
    return (
        Callback.objects.filter(conversation_id=conversation_id, status=Callback.Status.PENDING)
        .order_by("queued_at", "id")
        .first()
    )


def callback_get_visible(*, user, callback_id):
    """A callback whose conversation the user may see, else None."""
    visible = conversations_visible_to(user).values("pk")
    return (
        Callback.objects.select_related("conversation", "account", "team")
        .filter(pk=callback_id, conversation__in=visible)
        .first()
    )


def caller_context(*, user, conversation, now=None, appointments=5):
    """What the agent picking up a call sees before answering: the conversation's
    patient (when the number matched one and the agent may see them), the
    patient's other open conversations the agent may see, and upcoming
    appointments. Three queries, whatever the counts."""
    now = now or timezone.now()
    patient = (
        patients_visible_to(user).filter(pk=conversation.patient_id).first()
        if conversation.patient_id
        else None
    )
    if patient is None:
        return {"patient": None, "open_conversations": [], "upcoming_appointments": []}
    open_conversations = list(
        conversations_visible_to(user)
        .filter(patient=patient, status__in=Conversation.ACTIVE_STATUSES)
        .order_by("-last_interaction_at", "-id")
        .values("id", "channel", "status", "priority", "team_id", "last_interaction_at")[:20]
    )
    upcoming = list(
        Appointment.objects.filter(
            patient=patient,
            starts_at__gte=now,
            status__in=[Appointment.Status.BOOKED, Appointment.Status.CONFIRMED],
        )
        .order_by("starts_at")
        .values("id", "starts_at", "status")[:appointments]
    )
    return {
        "patient": patient,
        "open_conversations": open_conversations,
        "upcoming_appointments": upcoming,
    }


def teammates_of(*, conversation):
    """Active staff of the conversation's team, by username, for assignment."""
    return list(
        get_user_model()
        .objects.filter(groups__pk=conversation.team.group_id, is_active=True)
        .order_by("username")
        .only("id", "username")
    )
