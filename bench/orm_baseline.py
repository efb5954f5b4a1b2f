"""The inbox and timeline pages of channels_app.selectors read through the ORM
instead of hand-written SQL: the same rows, the same keyset, the same plan (one
branch per team, each in the order of the partial index, merged by UNION ALL),
through `.values()`, so no model instance is built, and decrypted the same way.

The baseline the README's "building QuerySets costs several times the query"
was never measured against: bench/inbox_timeline.py times these against the
selectors in the same run. Forward pages only (the bench follows `next` cursors).
"""

from django.db.models import Exists, F, OuterRef, Q

from channels_app.models import Conversation, ConversationRead, Interaction
from channels_app.selectors import INBOX_COLUMNS, INBOX_SORTS, _inbox_row
from compliance.access import team_ids_of
from contactcenter.keyset import KeysetPagination, Page
from patients.selectors import patients_visible_to

_EXTRA = ("patient__given_name", "patient__family_name", "patient__team_id", "assignee__username")


def _keyset(sort_column, cursor):
    """Rows after the cursor in newest-first order. The `<=` on the sort column
    alone gives PostgreSQL the index bound the SQL's row comparison gives it."""
    if cursor is None:
        return Q()
    stamp, row_id = cursor.key
    return Q(**{f"{sort_column}__lte": stamp}) & (
        Q(**{f"{sort_column}__lt": stamp}) | Q(**{sort_column: stamp, "id__lt": row_id})
    )


def inbox_page_orm(*, user, page):
    """inbox_page() with the default filters (active statuses, newest first)."""
    team_ids = team_ids_of(user) or []
    if not team_ids:
        return Page(rows=[], next=None, previous=None)
    sort_column, _descending = INBOX_SORTS["last_interaction"]
    order = (f"-{sort_column}", "-id")
    unread = ~Exists(
        ConversationRead.objects.filter(
            conversation_id=OuterRef("pk"), user_id=user.pk, last_read_at__gte=OuterRef(sort_column)
        )
    )
    branches = [
        Conversation.objects.filter(
            _keyset(sort_column, page.cursor),
            team_id=team_id,
            status__in=list(Conversation.ACTIVE_STATUSES),
        )
        .annotate(unread=unread)
        .order_by(*order)
        .values(*INBOX_COLUMNS, *_EXTRA, "unread")[: page.size + 1]
        for team_id in team_ids
    ]
    merged = branches[0].union(*branches[1:], all=True) if len(branches) > 1 else branches[0]
    if len(branches) > 1:
        merged = merged.order_by(*order)[: page.size + 1]
    fetched = list(merged)
    visible = {
        row["patient_id"]
        for row in fetched
        if row["patient_id"] is not None and row["patient__team_id"] in team_ids
    }
    others = {row["patient_id"] for row in fetched if row["patient_id"] is not None} - visible
    if others:
        visible.update(patients_visible_to(user).filter(pk__in=others).values_list("pk", flat=True))
    rows = [
        _inbox_row(
            [
                *(row[column] for column in INBOX_COLUMNS),
                *(row[name] for name in _EXTRA),
                row["unread"],
            ],
            visible_patient_ids=visible,
        )
        for row in fetched
    ]
    return KeysetPagination.page_from(
        rows, page=page, key_of=lambda row: (row[sort_column], row["id"])
    )


def timeline_page_orm(*, user, patient_id, page):
    """timeline_page() without filters: the access rule as an EXISTS in the same
    statement, newest first through the (patient, occurred_at desc, id desc) index."""
    body = Interaction._meta.get_field("body")
    fetched = list(
        Interaction.objects.filter(
            _keyset("occurred_at", page.cursor),
            Exists(patients_visible_to(user).filter(pk=patient_id)),
            patient_id=patient_id,
        )
        .order_by("-occurred_at", "-id")
        .values(
            "id",
            "conversation_id",
            "patient_id",
            "channel",
            "kind",
            "direction",
            "body",
            "occurred_at",
            "sentiment",
            author_name=F("author__username"),
            delivery_status=F("outbound__state"),
            delivery_error=F("outbound__last_error"),
        )[: page.size + 1]
    )
    rows = [
        {
            "id": row["id"],
            "conversation_id": row["conversation_id"],
            "patient_id": row["patient_id"],
            "channel": row["channel"],
            "kind": row["kind"],
            "direction": row["direction"],
            "author": row["author_name"],
            "body": body.decrypt_stored(row["body"], pk=row["id"]),
            "occurred_at": row["occurred_at"],
            "sentiment": row["sentiment"],
            "delivery_status": row["delivery_status"],
            "delivery_error": row["delivery_error"] or None,
        }
        for row in fetched
    ]
    if not rows and not patients_visible_to(user).filter(pk=patient_id).exists():
        return None
    return KeysetPagination.page_from(
        rows, page=page, key_of=lambda row: (row["occurred_at"], row["id"])
    )


def compare(*, who, rounds, deep_pages, rng):
    """Each page through the selector (SQL) and through the ORM, checked to give
    the same rows, then timed interleaved in a fresh random order every round.
    Returns {label: (sql samples ms, orm samples ms)}."""
    import time

    from channels_app.selectors import InboxFilters, TimelineFilters, inbox_page, timeline_page
    from contactcenter.keyset import PageRequest

    size = 50
    inbox_agent, timeline_agent = who["inbox_agent"], who["timeline_agent"]
    patient_id = who["patient"].pk

    def sql_inbox(user, cursor):
        return lambda: inbox_page(
            user=user, filters=InboxFilters(), page=PageRequest(cursor=cursor, size=size)
        )

    def orm_inbox(user, cursor):
        return lambda: inbox_page_orm(user=user, page=PageRequest(cursor=cursor, size=size))

    def sql_timeline(cursor):
        return lambda: timeline_page(
            user=timeline_agent,
            patient_id=patient_id,
            filters=TimelineFilters(),
            page=PageRequest(cursor=cursor, size=size),
        )

    def orm_timeline(cursor):
        return lambda: timeline_page_orm(
            user=timeline_agent, patient_id=patient_id, page=PageRequest(cursor=cursor, size=size)
        )

    def deep_cursor(read):
        cursor = None
        for _ in range(deep_pages):
            cursor = read(cursor)().next
        return cursor

    inbox_deep = deep_cursor(lambda c: sql_inbox(inbox_agent, c))
    timeline_deep = deep_cursor(sql_timeline)
    cases = {
        "timeline, first page": (sql_timeline(None), orm_timeline(None)),
        f"timeline, page {deep_pages + 1}": (
            sql_timeline(timeline_deep),
            orm_timeline(timeline_deep),
        ),
        "inbox, first page": (sql_inbox(inbox_agent, None), orm_inbox(inbox_agent, None)),
        f"inbox, page {deep_pages + 1}": (
            sql_inbox(inbox_agent, inbox_deep),
            orm_inbox(inbox_agent, inbox_deep),
        ),
    }
    if who.get("two_team_agent") is not None:
        both = who["two_team_agent"]
        cases["inbox, 2 teams"] = (sql_inbox(both, None), orm_inbox(both, None))
    for label, (by_sql, by_orm) in cases.items():
        if by_sql().rows != by_orm().rows:
            raise SystemExit(f"ORM baseline, {label}: other rows than the selector")
    tasks = [(label, side) for label in cases for side in (0, 1)]
    samples = {task: [] for task in tasks}
    for _ in range(rounds):
        rng.shuffle(tasks)
        for label, side in tasks:
            started = time.perf_counter_ns()
            cases[label][side]()
            samples[(label, side)].append((time.perf_counter_ns() - started) / 1e6)
    return {label: (samples[(label, 0)], samples[(label, 1)]) for label in cases}
