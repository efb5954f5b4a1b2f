"""Reads for the KPI report. Every definition is in reporting/METRICS.md.

Figures are computed per (local day, team, channel) group: `kpi_groups_compute()`
does it from the conversations, calls and surveys themselves, by SQL aggregation
(counts and sums grouped in the database, never rows counted in Python). The
nightly rollup stores those groups for past days, and the intraday rollup those
of today's closed quarters of an hour; `kpi_report()` sums stored groups for what
is rolled up and computes the rest live (the current quarter, and any day the
rollup has not reached), then derives rates and percentiles.

The one exception to "aggregate in SQL" is the business-hours durations (first
response and resolution time): a team's calendar (weekly hours, time zone,
holidays) lives in Python, so those are computed in Python over one row of four
timestamps per resolved conversation of the bounded range, and kept as sorted
samples in the rollup so that a period's median and p90 stay exact.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Cast, Round, TruncDate, TruncWeek
from django.utils import timezone

from channels_app.models import Callback, CallDetail, Conversation, Interaction
from contactcenter import sql
from patients.models import Channel
from reporting.calendars import team_calendars
from reporting.fields import unpack_integers
from reporting.models import (
    ADDITIVE_KEYS,
    KpiDailyRollup,
    KpiRollupDay,
    SurveyReply,
    SurveyRequest,
    SurveyResponse,
)
from understanding.models import SelfServiceResolution

FCR_WINDOW = timedelta(days=7)
SELF_SERVICE_RETURN_WINDOW = timedelta(hours=24)
# What a patient does that counts as contact (notes and events are staff-side).
CONTACT_KINDS = (Interaction.Kind.MESSAGE, Interaction.Kind.CALL, Interaction.Kind.VOICEMAIL)
INTERVALS = ("day", "week")
PERCENTILES = (0.5, 0.9)
# Duration metrics, each kept as samples in the rollup column "<name>_samples".
SAMPLE_METRICS = ("first_response", "resolution")

# Sentiment deltas are summed as whole millionths (scores have 4 decimals).
SENTIMENT_SCALE = 1_000_000


@dataclass(frozen=True)
class KpiSettings:
    time_zone: ZoneInfo
    short_abandon_seconds: int
    service_level_seconds: int


def kpi_settings():
    return KpiSettings(
        time_zone=ZoneInfo(getattr(settings, "KPI_TIME_ZONE", settings.TIME_ZONE)),
        short_abandon_seconds=int(getattr(settings, "KPI_SHORT_ABANDON_SECONDS", 10)),
        service_level_seconds=int(getattr(settings, "KPI_SERVICE_LEVEL_SECONDS", 30)),
    )


def kpi_today():
    return timezone.localdate(timezone=kpi_settings().time_zone)


def empty_group():
    group = dict.fromkeys(ADDITIVE_KEYS, 0)
    group["samples"] = {name: [] for name in SAMPLE_METRICS}
    return group


def _bounds(first_day, last_day, zone):
    """[start, end) of local days first_day..last_day as aware datetimes."""
    start = datetime.combine(first_day, time(0), tzinfo=zone)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def _not_survey_closed():
    """Conversations a bare survey score opened and that were closed automatically
    are not conversations with the practice: they are left out of every figure."""
    return ~Exists(SurveyReply.objects.filter(closed_conversation=OuterRef("pk")))


def _scoped(queryset, *, team_field, team_ids, channel_field=None, channel=None):
    if team_ids is not None:
        queryset = queryset.filter(**{f"{team_field}__in": list(team_ids)})
    if channel and channel_field:
        queryset = queryset.filter(**{channel_field: channel})
    return queryset


def _add_calls(groups, *, start, end, team_ids, channel, config):
    if channel and channel != Channel.VOICE:
        return
    calls = _scoped(
        CallDetail.objects.filter(
            interaction__channel=Channel.VOICE,
            interaction__direction=Interaction.Direction.INBOUND,
            interaction__occurred_at__gte=start,
            interaction__occurred_at__lt=end,
        ),
        team_field="interaction__conversation__team_id",
        team_ids=team_ids,
    )
    abandoned = Q(queue_result=CallDetail.QueueResult.ABANDONED)
    short = abandoned & Q(queue_wait_seconds__lt=config.short_abandon_seconds)
    answered = Q(queue_result=CallDetail.QueueResult.ANSWERED, queue_wait_seconds__isnull=False)
    # A call that took a callback is "callback", never "abandoned": the caller
    # left the queue on our offer, not in frustration.
    rows = (
        calls.annotate(
            day=TruncDate("interaction__occurred_at", tzinfo=config.time_zone),
            team=F("interaction__conversation__team_id"),
        )
        .values("day", "team")
        .annotate(
            offered=Count("pk", filter=Q(queue_wait_seconds__isnull=False) & ~short),
            answered=Count("pk", filter=answered),
            abandoned=Count("pk", filter=abandoned & ~short),
            short_abandoned=Count("pk", filter=short),
            wait=Sum("queue_wait_seconds", filter=answered),
            within=Count(
                "pk",
                filter=answered & Q(queue_wait_seconds__lte=config.service_level_seconds),
            ),
            callbacks_offered=Count("pk", filter=Q(callback_offered_at__isnull=False)),
        )
    )
    for row in rows:
        group = groups[(row["day"], row["team"], Channel.VOICE.value)]
        group["calls_offered"] += row["offered"]
        group["calls_answered"] += row["answered"]
        group["calls_abandoned"] += row["abandoned"]
        group["calls_short_abandoned"] += row["short_abandoned"]
        group["calls_answered_wait_seconds"] += row["wait"] or 0
        group["calls_answered_within_target"] += row["within"]
        group["callbacks_offered"] += row["callbacks_offered"]


def _add_callbacks(groups, *, start, end, team_ids, channel, config):
    """Callbacks on the day they were asked for, for the team whose queue they hold
    a place in, on channel voice (one asked for by text too: it is a call)."""
    if channel and channel != Channel.VOICE:
        return
    callbacks = _scoped(
        Callback.objects.filter(requested_at__gte=start, requested_at__lt=end),
        team_field="team_id",
        team_ids=team_ids,
    )
    made = Q(dialled_at__isnull=False)
    rows = (
        callbacks.annotate(day=TruncDate("requested_at", tzinfo=config.time_zone))
        .values("day", "team_id")
        .annotate(
            accepted=Count("pk"),
            made=Count("pk", filter=made),
            within=Count("pk", filter=made & Q(dialled_at__lte=F("due_at"))),
            # A sum of durations, not of their seconds extracted: SQLite (`make run`)
            # has no interval type to extract them from.
            waited=Sum(
                ExpressionWrapper(
                    F("dialled_at") - F("requested_at"), output_field=DurationField()
                ),
                filter=made,
            ),
        )
    )
    for row in rows:
        group = groups[(row["day"], row["team_id"], Channel.VOICE.value)]
        group["callbacks_accepted"] += row["accepted"]
        group["callbacks_made"] += row["made"]
        group["callbacks_made_within_window"] += row["within"]
        waited = row["waited"]
        group["callbacks_time_to_callback_seconds"] += (
            round(waited.total_seconds()) if waited else 0
        )


def _conversations(*, team_ids, channel):
    return _scoped(
        Conversation.objects.filter(_not_survey_closed()),
        team_field="team_id",
        team_ids=team_ids,
        channel_field="channel",
        channel=channel,
    )


def _add_opened(groups, *, start, end, team_ids, channel, config):
    rows = (
        _conversations(team_ids=team_ids, channel=channel)
        .filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at", tzinfo=config.time_zone))
        .values("day", "team_id", "channel")
        .annotate(opened=Count("pk"))
    )
    for row in rows:
        groups[(row["day"], row["team_id"], row["channel"])]["conversations_opened"] += row[
            "opened"
        ]


def _resolved(*, start, end, team_ids, channel):
    return _conversations(team_ids=team_ids, channel=channel).filter(
        status=Conversation.Status.RESOLVED, resolved_at__gte=start, resolved_at__lt=end
    )


def _is_resolution_event():
    # The text conversation_change() records for a status move to resolved.
    return Q(
        kind=Interaction.Kind.EVENT,
        metadata__change__startswith="status ",
        metadata__change__endswith=" → resolved",
    )


def _reopens():
    """Reopen events of the conversation before its (latest) resolution."""
    return Interaction.objects.filter(
        conversation=OuterRef("pk"),
        kind=Interaction.Kind.EVENT,
        metadata__change="reopened",
        occurred_at__lte=OuterRef("resolved_at"),
    )


def _reopened_within_window():
    """A reopen that came within FCR_WINDOW of the resolution it undid: some
    resolution event of the same conversation in the window before it (if any
    resolution is in that window, the one it undid, the latest, is too)."""
    undone = Interaction.objects.filter(
        _is_resolution_event(),
        conversation=OuterRef("conversation"),
        occurred_at__lt=OuterRef("occurred_at"),
        occurred_at__gte=OuterRef("occurred_at") - FCR_WINDOW,
    )
    return _reopens().filter(Exists(undone))


def _recontacted():
    """New contact from the patient within FCR_WINDOW after the resolution: any
    inbound message, call or voicemail of the same patient (any conversation and
    channel), or from the same address on the same practice account when no
    patient is known, or on the same conversation when neither is. Survey
    answers are not new contact."""
    later = Interaction.objects.filter(
        direction=Interaction.Direction.INBOUND,
        kind__in=CONTACT_KINDS,
        occurred_at__gt=OuterRef("resolved_at"),
        occurred_at__lte=OuterRef("resolved_at") + FCR_WINDOW,
    ).exclude(Exists(SurveyReply.objects.filter(interaction=OuterRef("pk"))))
    return Case(
        When(
            patient_id__isnull=False,
            then=Exists(later.filter(patient_id=OuterRef("patient_id"))),
        ),
        When(
            ~Q(contact_index=""),
            then=Exists(
                later.filter(
                    conversation__account_id=OuterRef("account_id"),
                    conversation__contact_index=OuterRef("contact_index"),
                )
            ),
        ),
        default=Exists(later.filter(conversation_id=OuterRef("pk"))),
        output_field=BooleanField(),
    )


# The conversation figures over the period's resolved conversations, each the
# filter that counts it: the report counts with these and the drill-down
# (kpi_conversations) lists with them, so a figure and its list cannot disagree.
RESOLVED_FIGURES = {
    "resolved": Q(),
    "fcr": Q(reopened_in_window=False, recontacted=False),
    "not_fcr": Q(reopened_in_window=True) | Q(recontacted=True),
    "escalated": Q(escalated=True),
    "resolved_without_escalation": Q(escalated=False),
    "reopened": Q(reopened=True),
}
# Conversations counted by the day they were created, not resolved.
OPENED_FIGURE = "opened"
# Resolved conversations that have a duration sample: every resolved one has its
# resolution time; a first response needs an inbound contact and a staff reply.
SAMPLE_FIGURES = ("first_response", "resolution")
DRILLDOWN_FIGURES = (OPENED_FIGURE, *RESOLVED_FIGURES, *SAMPLE_FIGURES)


def _with_resolution_flags(queryset):
    return queryset.alias(
        reopened=Exists(_reopens()),
        reopened_in_window=Exists(_reopened_within_window()),
        recontacted=_recontacted(),
    )


def _add_resolved(groups, *, start, end, team_ids, channel, config):
    scored = Q(sentiment_first__isnull=False, sentiment_latest__isnull=False)
    rows = (
        _with_resolution_flags(_resolved(start=start, end=end, team_ids=team_ids, channel=channel))
        .annotate(day=TruncDate("resolved_at", tzinfo=config.time_zone))
        .values("day", "team_id", "channel")
        .annotate(
            resolved=Count("pk"),
            fcr=Count("pk", filter=RESOLVED_FIGURES["fcr"]),
            escalated=Count("pk", filter=RESOLVED_FIGURES["escalated"]),
            reopened=Count("pk", filter=RESOLVED_FIGURES["reopened"]),
            scored=Count("pk", filter=scored),
            delta=Sum(
                Cast(
                    Round((F("sentiment_latest") - F("sentiment_first")) * SENTIMENT_SCALE),
                    BigIntegerField(),
                ),
                filter=scored,
            ),
        )
    )
    for row in rows:
        group = groups[(row["day"], row["team_id"], row["channel"])]
        group["conversations_resolved"] += row["resolved"]
        group["conversations_fcr"] += row["fcr"]
        group["conversations_escalated"] += row["escalated"]
        group["conversations_reopened"] += row["reopened"]
        group["sentiment_conversations"] += row["scored"]
        group["sentiment_delta_millionths"] += row["delta"] or 0


def _first_inbound():
    return (
        Interaction.objects.filter(
            conversation=OuterRef("pk"),
            direction=Interaction.Direction.INBOUND,
            kind__in=CONTACT_KINDS,
        )
        .order_by("occurred_at")
        .values("occurred_at")[:1]
    )


def _first_reply():
    return (
        Interaction.objects.filter(
            conversation=OuterRef("pk"),
            direction=Interaction.Direction.OUTBOUND,
            author__isnull=False,
            occurred_at__gte=OuterRef("first_inbound_at"),
        )
        .order_by("occurred_at")
        .values("occurred_at")[:1]
    )


def kpi_conversations(*, figure, since, until, team_ids=None, channel=None):
    """The conversations a conversation figure of kpi_report counts over local
    days since..until, as a Conversation queryset (the same filters as the
    count). Days the report takes from the nightly rollup were counted when they
    were rolled up; this reads the conversations as they are now, so the two
    differ only where something changed since (kpi_rolled_up_days says which
    days those are). Evaluate it inside sql.analytic_statements(), as the
    report's statements run."""
    if figure not in DRILLDOWN_FIGURES:
        raise ValueError(f"figure must be one of {', '.join(DRILLDOWN_FIGURES)}")
    config = kpi_settings()
    start, end = _bounds(since, until, config.time_zone)
    if figure == OPENED_FIGURE:
        return _conversations(team_ids=team_ids, channel=channel).filter(
            created_at__gte=start, created_at__lt=end
        )
    resolved = _resolved(start=start, end=end, team_ids=team_ids, channel=channel)
    if figure == "first_response":
        return (
            resolved.annotate(first_inbound_at=Subquery(_first_inbound()))
            .annotate(first_reply_at=Subquery(_first_reply()))
            .filter(first_inbound_at__isnull=False, first_reply_at__isnull=False)
        )
    if figure == "resolution":
        return resolved
    return _with_resolution_flags(resolved).filter(RESOLVED_FIGURES[figure])


def kpi_rollup_coverage(*, since, until):
    """{day: None when the whole day is rolled up, else the moment its rollup
    reaches} for the days of since..until that kpi_report reads, wholly or in
    part, from the rollup. Today is rolled up through its last closed quarter of an
    hour only; the rest of it is computed live."""
    today = kpi_today()
    # A whole-day marker for today (a rollup run by hand) would freeze the rest of
    # the day: only the intraday rollup's partial one counts for today.
    return dict(
        KpiRollupDay.objects.filter(day__gte=since, day__lte=min(until, today))
        .exclude(day=today, covers_until__isnull=True)
        .values_list("day", "covers_until")
    )


def kpi_rolled_up_days(*, since, until):
    """The days of since..until whose figures kpi_report reads, wholly or in part,
    from the rollup."""
    return set(kpi_rollup_coverage(since=since, until=until))


def _add_durations(groups, *, start, end, team_ids, channel, config):
    """First response and resolution time in business hours, as samples. One row
    of timestamps per resolved conversation; the interactions themselves are read
    by the database through the (conversation, occurred_at) index."""
    query = (
        _resolved(start=start, end=end, team_ids=team_ids, channel=channel)
        .annotate(first_inbound_at=Subquery(_first_inbound()))
        .annotate(first_reply_at=Subquery(_first_reply()))
        .values_list(
            "team_id", "channel", "created_at", "resolved_at", "first_inbound_at", "first_reply_at"
        )
        .query
    )
    # Through contactcenter.sql, whose timestamp parsing is native: Django's own
    # took a third of a busy day's live figures (four timestamps a conversation).
    timestamp = Conversation._meta.get_field("created_at")
    rows = sql.fetch(*query.sql_with_params(), [None, None, *(timestamp,) * 4])
    calendars = team_calendars(team_ids={row[0] for row in rows})
    for team_id, conversation_channel, created_at, resolved_at, inbound_at, reply_at in rows:
        calendar = calendars.get(team_id)
        day = resolved_at.astimezone(config.time_zone).date()
        samples = groups[(day, team_id, conversation_channel)]["samples"]
        samples["resolution"].append(_business_seconds(calendar, created_at, resolved_at))
        if inbound_at is not None and reply_at is not None:
            samples["first_response"].append(_business_seconds(calendar, inbound_at, reply_at))


def _business_seconds(calendar, start, end):
    """Whole seconds of business time; around the clock without a calendar."""
    if end <= start:
        return 0
    elapsed = calendar.business_time_between(start, end) if calendar else end - start
    return int(elapsed.total_seconds())


def _add_surveys(groups, *, start, end, team_ids, channel, config):
    sent = (
        _scoped(
            SurveyRequest.objects.filter(sent_at__gte=start, sent_at__lt=end),
            team_field="team_id",
            team_ids=team_ids,
            channel_field="channel",
            channel=channel,
        )
        .annotate(day=TruncDate("sent_at", tzinfo=config.time_zone))
        .values("day", "team_id", "channel")
        .annotate(sent=Count("pk"))
    )
    for row in sent:
        groups[(row["day"], row["team_id"], row["channel"])]["surveys_sent"] += row["sent"]
    answered = (
        _scoped(
            SurveyResponse.objects.filter(received_at__gte=start, received_at__lt=end),
            team_field="team_id",
            team_ids=team_ids,
            channel_field="channel",
            channel=channel,
        )
        .annotate(day=TruncDate("received_at", tzinfo=config.time_zone))
        .values("day", "team_id", "channel")
        .annotate(
            responses=Count("pk"),
            score_sum=Sum("score"),
            satisfied=Count("pk", filter=Q(score__gte=4)),
            effort_responses=Count("effort_score"),
            effort_sum=Sum("effort_score"),
        )
    )
    for row in answered:
        group = groups[(row["day"], row["team_id"], row["channel"])]
        group["csat_responses"] += row["responses"]
        group["csat_score_sum"] += row["score_sum"] or 0
        group["csat_satisfied"] += row["satisfied"]
        group["ces_responses"] += row["effort_responses"]
        group["ces_score_sum"] += row["effort_sum"] or 0


def _add_self_service(groups, *, start, end, team_ids, channel, config):
    rows = (
        _scoped(
            SelfServiceResolution.objects.filter(resolved_at__gte=start, resolved_at__lt=end),
            team_field="team_id",
            team_ids=team_ids,
            channel_field="channel",
            channel=channel,
        )
        .annotate(day=TruncDate("resolved_at", tzinfo=config.time_zone))
        .values("day", "team_id", "channel")
        .annotate(
            resolved=Count("pk"),
            came_back=Count(
                "pk", filter=Q(came_back_at__lte=F("resolved_at") + SELF_SERVICE_RETURN_WINDOW)
            ),
        )
    )
    for row in rows:
        group = groups[(row["day"], row["team_id"], row["channel"])]
        group["self_service_resolved"] += row["resolved"]
        group["self_service_came_back"] += row["came_back"]


@sql.analytic_statements()
def kpi_groups_compute(*, first_day, last_day, team_ids=None, channel=None):
    """{(day, team id, channel): figures} for the local days first_day..last_day,
    computed from the source rows. team_ids None means every team."""
    start, end = _bounds(first_day, last_day, kpi_settings().time_zone)
    return kpi_groups_between(start=start, end=end, team_ids=team_ids, channel=channel)


@sql.analytic_statements()
def kpi_groups_between(*, start, end, team_ids=None, channel=None):
    """{(day, team id, channel): figures} of what happened in [start, end), each
    figure on the local day of its timestamp: whole days, or part of one (the
    intraday rollup's closed quarters, the report's live rest of a day)."""
    config = kpi_settings()
    groups = defaultdict(empty_group)
    scope = {"start": start, "end": end, "team_ids": team_ids, "channel": channel, "config": config}
    _add_calls(groups, **scope)
    _add_callbacks(groups, **scope)
    _add_opened(groups, **scope)
    _add_resolved(groups, **scope)
    _add_durations(groups, **scope)
    _add_surveys(groups, **scope)
    _add_self_service(groups, **scope)
    for group in groups.values():
        for samples in group["samples"].values():
            samples.sort()
    return dict(groups)


# --- The report -----------------------------------------------------------------


def _days(first_day, last_day):
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def _bucket_start(day, interval):
    return day - timedelta(days=day.weekday()) if interval == "week" else day


def _ranges(days):
    """Contiguous (first, last) runs of sorted days."""
    runs = []
    for day in days:
        if runs and runs[-1][1] == day - timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    return [tuple(run) for run in runs]


def _rollup_rows(*, first_day, last_day, team_ids, channel):
    return _scoped(
        KpiDailyRollup.objects.filter(day__gte=first_day, day__lte=last_day),
        team_field="team_id",
        team_ids=team_ids,
        channel_field="channel",
        channel=channel,
    )


def _rollup_sums(*, first_day, last_day, team_ids, channel, interval):
    """{bucket start: additive figures} summed in SQL over the stored groups."""
    rows = _rollup_rows(first_day=first_day, last_day=last_day, team_ids=team_ids, channel=channel)
    bucket = TruncWeek("day") if interval == "week" else F("day")
    sums = (
        rows.annotate(bucket=bucket)
        .values("bucket")
        # Django refuses an annotation named like a column.
        .annotate(**{f"sum_{key}": Sum(key) for key in ADDITIVE_KEYS})
    )
    result = {}
    for row in sums:
        start = row["bucket"]
        if isinstance(start, datetime):
            start = start.date()
        result[start] = {key: row[f"sum_{key}"] or 0 for key in ADDITIVE_KEYS}
    return result


def _interpolated(sorted_values, fraction):
    """percentile_cont's definition: linear interpolation between closest ranks."""
    position = fraction * (len(sorted_values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def _percentiles(*, rolled_days, live_groups, team_ids, channel, interval):
    """{(metric, bucket start or None for the period): (count, [p50, p90])}, with
    percentile_cont's interpolation, over the rollups' samples and the live days'.

    Sorting the samples here beats percentile_cont in PostgreSQL: a year is about
    270k samples, and the aggregate sorted them once per bucket and again for the
    period (GROUPING SETS) in 450 ms, where reading them packed and sorting them
    in Python takes about 60 ms (bench/kpi_report.py). The same code serves SQLite."""
    collected = defaultdict(list)
    for (day, _team, _channel), group in live_groups.items():
        bucket = _bucket_start(day, interval)
        for metric in SAMPLE_METRICS:
            collected[(metric, bucket)].extend(group["samples"][metric])
    if rolled_days:
        for day, samples in _rolled_samples(
            rolled_days=rolled_days, team_ids=team_ids, channel=channel
        ).items():
            bucket = _bucket_start(day, interval)
            for metric, values in zip(SAMPLE_METRICS, samples, strict=True):
                collected[(metric, bucket)].extend(values)
    result = {}
    for metric in SAMPLE_METRICS:
        period = []
        for (name, bucket), values in list(collected.items()):
            if name != metric or not values:
                continue
            values.sort()
            result[(metric, bucket)] = (len(values), _percentile_values(values))
            period.extend(values)
        if period:
            period.sort()
            result[(metric, None)] = (len(period), _percentile_values(period))
        result[(metric, "samples")] = period
    return result


def _percentile_values(sorted_values):
    return [_interpolated(sorted_values, fraction) for fraction in PERCENTILES]


def _rolled_samples(*, rolled_days, team_ids, channel):
    """{day: [samples per metric]} from the stored rollups of the days. A day's rows
    (one per team and channel) have their packed samples joined as bytes and
    unpacked once: converting each of a year's 11,000 rows on its own was most of
    the report's time."""
    names = ("day", *(f"{metric}_samples" for metric in SAMPLE_METRICS))
    rows = _rollup_rows(
        first_day=min(rolled_days), last_day=max(rolled_days), team_ids=team_ids, channel=channel
    ).values_list(*names)
    statement, params = rows.query.sql_with_params()
    # The day is converted (SQLite returns text); the samples stay bytes.
    fields = [KpiDailyRollup._meta.get_field("day"), *(None for _ in SAMPLE_METRICS)]
    packed = defaultdict(lambda: [bytearray() for _ in SAMPLE_METRICS])
    for day, *samples in sql.fetch(statement, params, fields):
        if day in rolled_days:
            for joined, data in zip(packed[day], samples, strict=True):
                joined += data
    return {day: [unpack_integers(data) for data in joined] for day, joined in packed.items()}


def _ratio(numerator, denominator, places=4):
    return round(numerator / denominator, places) if denominator else None


def _seconds(value):
    return round(value, 1) if value is not None else None


def _figures(sums, percentiles, key):
    """The report's figures of one bucket (or the period) from its additive sums
    and its percentiles."""

    def duration(metric):
        count, values = percentiles.get((metric, key), (0, [None, None]))
        return {"count": count, "median": _seconds(values[0]), "p90": _seconds(values[1])}

    resolved = sums["conversations_resolved"]
    escalated = sums["conversations_escalated"]
    return {
        "calls": {
            "offered": sums["calls_offered"],
            "answered": sums["calls_answered"],
            "abandoned": sums["calls_abandoned"],
            "short_abandoned": sums["calls_short_abandoned"],
            "abandonment_rate": _ratio(sums["calls_abandoned"], sums["calls_offered"]),
            "asa_seconds": _ratio(
                sums["calls_answered_wait_seconds"], sums["calls_answered"], places=1
            ),
            "service_level": _ratio(sums["calls_answered_within_target"], sums["calls_offered"]),
        },
        "callbacks": {
            "offered": sums["callbacks_offered"],
            "accepted": sums["callbacks_accepted"],
            "acceptance_rate": _ratio(sums["callbacks_accepted"], sums["callbacks_offered"]),
            "made": sums["callbacks_made"],
            "made_within_window": sums["callbacks_made_within_window"],
            "within_window_rate": _ratio(
                sums["callbacks_made_within_window"], sums["callbacks_accepted"]
            ),
            "mean_time_to_callback_seconds": _ratio(
                sums["callbacks_time_to_callback_seconds"], sums["callbacks_made"], places=1
            ),
        },
        "conversations": {
            "opened": sums["conversations_opened"],
            "resolved": resolved,
            "first_response_seconds": duration("first_response"),
            "resolution_seconds": duration("resolution"),
            "fcr": sums["conversations_fcr"],
            "fcr_rate": _ratio(sums["conversations_fcr"], resolved),
            "escalated": escalated,
            "escalation_rate": _ratio(escalated, resolved),
            "resolved_without_escalation": resolved - escalated,
            "resolved_without_escalation_rate": _ratio(resolved - escalated, resolved),
            "reopened": sums["conversations_reopened"],
            "reopen_rate": _ratio(sums["conversations_reopened"], resolved),
        },
        "sentiment": {
            "conversations": sums["sentiment_conversations"],
            "mean_delta": _ratio(
                sums["sentiment_delta_millionths"],
                sums["sentiment_conversations"] * SENTIMENT_SCALE,
            ),
        },
        "csat": {
            "surveys_sent": sums["surveys_sent"],
            "responses": sums["csat_responses"],
            "mean": _ratio(sums["csat_score_sum"], sums["csat_responses"], places=2),
            "satisfied_share": _ratio(sums["csat_satisfied"], sums["csat_responses"]),
            "ces_responses": sums["ces_responses"],
            "ces_mean": _ratio(sums["ces_score_sum"], sums["ces_responses"], places=2),
        },
        "self_service": {
            "resolved": sums["self_service_resolved"],
            "came_back_within_24h": sums["self_service_came_back"],
            "came_back_rate": _ratio(sums["self_service_came_back"], sums["self_service_resolved"]),
        },
    }


def _add_sums(total, part):
    for key in ADDITIVE_KEYS:
        total[key] += part[key]


@sql.analytic_statements()
def kpi_report(
    *, since, until, team_ids=None, channel=None, interval="day", use_rollups=True, samples=False
):
    """The KPI report for local days since..until (inclusive) of the given teams
    (None: every team) and channel (None: every channel), per interval bucket
    and for the whole period. Rolled-up past days come from the rollups, the rest
    is computed live; use_rollups=False computes everything live (benchmarks, and
    checking a rollup against its source). samples=True adds the period's sorted
    duration samples (seconds) under "samples", for the workspace's distribution
    charts: the ones its median and p90 are computed from."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    config = kpi_settings()
    today = kpi_today()
    days = _days(since, until)
    coverage = kpi_rollup_coverage(since=since, until=until) if use_rollups else {}
    rolled = set(coverage)
    live_days = [day for day in days if day not in rolled and day <= today]

    live_groups = {}
    for first_day, last_day in _ranges(live_days):
        live_groups.update(
            kpi_groups_compute(
                first_day=first_day, last_day=last_day, team_ids=team_ids, channel=channel
            )
        )
    # A day rolled up in part (today, through its last closed quarter): the rollup
    # has what happened before covers_until, the rest of the day is computed now.
    partial = {day: until_ for day, until_ in coverage.items() if until_ is not None}
    for day, covers_until in partial.items():
        _, day_end = _bounds(day, day, config.time_zone)
        live_groups.update(
            kpi_groups_between(start=covers_until, end=day_end, team_ids=team_ids, channel=channel)
        )

    bucket_starts = sorted({_bucket_start(day, interval) for day in days})
    sums = {start: empty_group() for start in bucket_starts}
    if rolled:
        for start, part in _rollup_sums(
            first_day=min(rolled),
            last_day=max(rolled),
            team_ids=team_ids,
            channel=channel,
            interval=interval,
        ).items():
            _add_sums(sums[start], part)
    for (day, _team, _channel), group in live_groups.items():
        _add_sums(sums[_bucket_start(day, interval)], group)
    period = empty_group()
    for part in sums.values():
        _add_sums(period, part)

    percentiles = _percentiles(
        rolled_days=rolled,
        live_groups=live_groups,
        team_ids=team_ids,
        channel=channel,
        interval=interval,
    )
    intervals = []
    for start in bucket_starts:
        end = start + timedelta(days=6) if interval == "week" else start
        intervals.append(
            {
                "start": max(start, since),
                "end": min(end, until),
                **_figures(sums[start], percentiles, start),
            }
        )
    report = {
        "since": since,
        "until": until,
        "interval": interval,
        "time_zone": str(config.time_zone),
        "teams": sorted(team_ids) if team_ids is not None else None,
        "channel": channel,
        "parameters": {
            "short_abandon_seconds": config.short_abandon_seconds,
            "service_level_seconds": config.service_level_seconds,
            "fcr_window_days": FCR_WINDOW.days,
        },
        "sources": {
            "rolled_up_days": len(rolled) - len(partial),
            "partly_rolled_up_days": len(partial),
            "rolled_up_until": max(partial.values(), default=None),
            "live_days": len(live_days),
        },
        "period": {"start": since, "end": until, **_figures(period, percentiles, None)},
        "intervals": intervals,
    }
    if samples:
        report["samples"] = {
            metric: percentiles.get((metric, "samples"), []) for metric in SAMPLE_METRICS
        }
    return report
