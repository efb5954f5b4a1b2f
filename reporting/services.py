"""Writes for reporting: the nightly KPI rollup, and CSAT surveys (scheduling,
sending, recording the answers that come back by SMS reply or by the survey
link of an email or portal message)."""

import functools
import re
from datetime import datetime, time, timedelta
from types import MappingProxyType

import structlog
from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import Max, Min, Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from channels_app.models import Conversation, Interaction
from channels_app.services import conversation_resolve, outbound_create
from contactcenter import sql
from contactcenter.process_copy import ProcessCopy
from escalation.sentiment import score_text
from patients.models import Channel
from patients.services import consent_check
from reporting.models import (
    ADDITIVE_KEYS,
    KpiDailyRollup,
    KpiRollupDay,
    SurveyReply,
    SurveyRequest,
    SurveyResponse,
)
from reporting.selectors import (
    kpi_groups_between,
    kpi_groups_compute,
    kpi_settings,
    kpi_today,
)

logger = structlog.stdlib.get_logger(__name__)

# FCR looks 7 days past a resolution, so a day's figures settle only after that;
# the nightly run recomputes this many past days (the window plus a margin).
ROLLUP_SETTLE_DAYS = 8
# One transaction per chunk, so a first run over years of history keeps its
# progress if it is stopped, and the next night continues after the last day.
ROLLUP_CHUNK_DAYS = 31
# The intraday rollup holds today up to the last closed quarter of an hour (the
# beat schedule runs it every 15 minutes); a report computes the rest live.
INTRADAY_MINUTES = 15

# An SMS survey is answered by a reply "1".."5", which we can read. An email reply
# comes wrapped in quoted text and the portal sends back no reply we parse, so
# surveys there carry a personal link to a one-question page instead.
REPLY_SURVEY_CHANNELS = (Channel.SMS,)
LINK_SURVEY_CHANNELS = (Channel.EMAIL, Channel.PORTAL)
SURVEYED_CHANNELS = REPLY_SURVEY_CHANNELS + LINK_SURVEY_CHANNELS
# Signatures made for survey links are good for nothing else, and no other
# signature (a password reset, a session) passes as a survey link.
SURVEY_LINK_SALT = "reporting.survey-link"
# How long a reminder stays answerable by "1"/"2" (reminders' reply window).
AUTOMATED_REPLY_WINDOW = timedelta(hours=72)
_ANSWER = re.compile(r"\s*([1-5])\s*[.!]*\s*")


# --- KPI rollup --------------------------------------------------------------------


def kpi_rollup_days(*, first_day, last_day):
    """Store the figures of local days first_day..last_day (an upsert: running it
    again for the same days replaces them), and mark the days as rolled up."""
    groups = kpi_groups_compute(first_day=first_day, last_day=last_day)
    now = timezone.now()
    markers = [
        KpiRollupDay(day=first_day + timedelta(days=n), computed_at=now, covers_until=None)
        for n in range((last_day - first_day).days + 1)
    ]
    with transaction.atomic():
        return _rollup_store(groups, first_day=first_day, last_day=last_day, markers=markers)


def kpi_rollup_intraday(*, now=None):
    """Store the figures of the day in progress up to the start of its current
    quarter of an hour (local time), so that a report of today computes live only
    the minutes since then (a busy day's figures are most of a year's report
    otherwise). Every run recomputes the day from its start, as the nightly rollup
    recomputes the days whose FCR can still change: a closed quarter's figures that
    look ahead (FCR, callbacks made, a call still in the queue) are as old as the
    last run, a quarter of an hour at most on the beat schedule, until the nightly
    rollup replaces the day."""
    now = now or timezone.now()
    zone = kpi_settings().time_zone
    local_now = now.astimezone(zone)
    day = local_now.date()
    day_start = datetime.combine(day, time(0), tzinfo=zone)
    # Every time zone's offset is a whole number of quarters of an hour.
    quarter_start = local_now.replace(
        minute=local_now.minute - local_now.minute % INTRADAY_MINUTES, second=0, microsecond=0
    )
    if quarter_start <= day_start:
        return 0  # the day's first quarter: nothing closed yet
    groups = kpi_groups_between(start=day_start, end=quarter_start)
    marker = KpiRollupDay(day=day, computed_at=now, covers_until=quarter_start)
    with transaction.atomic():
        # Never replace a whole-day rollup of the day with a part of it.
        if KpiRollupDay.objects.filter(day=day, covers_until__isnull=True).exists():
            return 0
        return _rollup_store(groups, first_day=day, last_day=day, markers=[marker])


def _rollup_store(groups, *, first_day, last_day, markers):
    """Replace the stored groups of days first_day..last_day with these, and
    upsert the days' markers. Runs in the caller's transaction."""
    now = timezone.now()
    rows = [
        KpiDailyRollup(
            day=day,
            team_id=team_id,
            channel=channel,
            **{key: figures[key] for key in ADDITIVE_KEYS},
            first_response_samples=figures["samples"]["first_response"],
            resolution_samples=figures["samples"]["resolution"],
            computed_at=now,
        )
        for (day, team_id, channel), figures in groups.items()
    ]
    # Groups that had figures on an earlier run and have none now (a
    # conversation reopened, moved to another team) must not linger.
    fresh = {(row.day, row.team_id, row.channel) for row in rows}
    stale = [
        pk
        for pk, *key in KpiDailyRollup.objects.filter(
            day__gte=first_day, day__lte=last_day
        ).values_list("pk", "day", "team_id", "channel")
        if tuple(key) not in fresh
    ]
    KpiDailyRollup.objects.filter(pk__in=stale).delete()
    KpiDailyRollup.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["day", "team", "channel"],
        update_fields=[
            *ADDITIVE_KEYS,
            "first_response_samples",
            "resolution_samples",
            "computed_at",
        ],
        batch_size=500,
    )
    KpiRollupDay.objects.bulk_create(
        markers,
        update_conflicts=True,
        unique_fields=["day"],
        update_fields=["computed_at", "covers_until"],
    )
    return len(rows)


def _first_day_with_data():
    earliest = Conversation.objects.aggregate(first=Min("created_at"))["first"]
    return earliest.astimezone(kpi_settings().time_zone).date() if earliest else None


def kpi_rollup_nightly(*, today=None):
    """Roll up every past day not rolled up yet (all history on the first run) and
    recompute the last ROLLUP_SETTLE_DAYS days, whose FCR can still change."""
    today = today or kpi_today()
    last_day = today - timedelta(days=1)
    settle_from = today - timedelta(days=ROLLUP_SETTLE_DAYS)
    latest = KpiRollupDay.objects.filter(covers_until__isnull=True).aggregate(latest=Max("day"))[
        "latest"
    ]
    first_day = (
        (_first_day_with_data() or last_day) if latest is None else latest + timedelta(days=1)
    )
    first_day = min(first_day, settle_from)
    days = 0
    while first_day <= last_day:
        chunk_end = min(first_day + timedelta(days=ROLLUP_CHUNK_DAYS - 1), last_day)
        kpi_rollup_days(first_day=first_day, last_day=chunk_end)
        days += (chunk_end - first_day).days + 1
        first_day = chunk_end + timedelta(days=1)
    logger.info("kpi_rollup_done", days=days)
    return days


# --- CSAT surveys ------------------------------------------------------------------


def _delay():
    return timedelta(seconds=int(getattr(settings, "CSAT_DELAY_SECONDS", 3600)))


def _repeat_window():
    return timedelta(days=int(getattr(settings, "CSAT_REPEAT_DAYS", 7)))


def _reply_window():
    return timedelta(seconds=int(getattr(settings, "CSAT_REPLY_WINDOW_SECONDS", 3 * 86400)))


def _comment_window():
    return timedelta(seconds=int(getattr(settings, "CSAT_COMMENT_WINDOW_SECONDS", 86400)))


def _patient_language(conversation):
    """The language survey questions go out in: the one the patient writes in
    (detected by understanding/), else their record's preferred language."""
    if conversation.language:
        return conversation.language
    if conversation.patient_id:
        return conversation.patient.preferred_language
    return settings.LANGUAGE_CODE


def _question_text():
    override = getattr(settings, "CSAT_QUESTION_TEXT", None)
    if override:
        return override
    return _(
        "%(practice)s: how satisfied are you with how we handled your request? Reply 1 "
        "(very unsatisfied) to 5 (very satisfied). You are welcome to add a comment in a "
        "second message."
    ) % {"practice": settings.PRACTICE_NAME}


def _link_question_text(link):
    return _(
        "%(practice)s: how satisfied are you with how we handled your request? Please "
        "tell us, from 1 (very unsatisfied) to 5 (very satisfied), and add a comment if "
        "you like, on this page:\n\n%(link)s\n\nIt takes a few seconds. Thank you!"
    ) % {"practice": settings.PRACTICE_NAME, "link": link}


def _effort_text():
    override = getattr(settings, "CSAT_EFFORT_TEXT", None)
    if override:
        return override
    return _(
        "Thank you! And how easy was it to get what you needed? "
        "Reply 1 (very difficult) to 5 (very easy)."
    )


def _same_person(conversation):
    """Surveys of the same patient, or of the same address on the same practice
    account when the conversation has no patient."""
    if conversation.patient_id:
        return Q(patient_id=conversation.patient_id)
    return Q(
        patient__isnull=True,
        conversation__account_id=conversation.account_id,
        conversation__contact_index=conversation.contact_index,
    )


def _other_automated_message_recent(conversation, *, now):
    """Whether another automated message (a reminder, an auto-reply) went to this
    patient recently. Reminders take a reply "1" or "2" within 72 hours as confirm
    or reschedule, whatever was sent last; a survey in that window would make a
    score of 1 or 2 ambiguous, and could reopen a conversation as a reschedule.
    A link answer cannot be mistaken for a reminder reply; the rule still holds
    on email and the portal, so a patient gets one automated request at a time."""
    recent = Interaction.objects.filter(
        direction=Interaction.Direction.OUTBOUND,
        author__isnull=True,
        channel=conversation.channel,
        occurred_at__gte=now - AUTOMATED_REPLY_WINDOW,
    ).exclude(conversation_id=conversation.pk)
    if conversation.patient_id:
        recent = recent.filter(patient_id=conversation.patient_id)
    else:
        recent = recent.filter(
            conversation__account_id=conversation.account_id,
            conversation__contact_index=conversation.contact_index,
        )
    return recent.exists()


def _has_recipient(conversation):
    """SMS and email go to the conversation's address. The portal delivers to the
    patient's account, and a portal conversation may have no address at all."""
    if conversation.channel == Channel.PORTAL:
        return conversation.patient_id is not None
    return bool(conversation.contact_index)


def _skip_reason(conversation, *, now, exclude=None, states):
    if conversation.priority == Conversation.Priority.URGENT:
        return SurveyRequest.SkipReason.URGENT
    if conversation.channel not in SURVEYED_CHANNELS:
        return SurveyRequest.SkipReason.CHANNEL_NOT_SURVEYED
    if not _has_recipient(conversation):
        return SurveyRequest.SkipReason.NO_CONTACT_POINT
    decision = consent_check(
        patient=conversation.patient,
        channel=conversation.channel,
        address=conversation.contact_address,
    )
    if not decision.allowed:
        return decision.reason
    recent = SurveyRequest.objects.filter(
        _same_person(conversation), state__in=states, created_at__gte=now - _repeat_window()
    )
    if exclude is not None:
        recent = recent.exclude(pk=exclude.pk)
    if recent.exists():
        return SurveyRequest.SkipReason.RECENT_SURVEY
    if _other_automated_message_recent(conversation, now=now):
        return SurveyRequest.SkipReason.AWAITING_OTHER_REPLY
    return ""


def survey_schedule(*, conversation, now=None):
    """Receiver of conversation_resolved: decide once whether this conversation
    gets a survey, and when. Skips are recorded with the reason."""
    now = now or timezone.now()
    reason = _skip_reason(
        conversation,
        now=now,
        states=[
            SurveyRequest.State.SCHEDULED,
            SurveyRequest.State.SENT,
            SurveyRequest.State.ANSWERED,
        ],
    )
    survey, _created = SurveyRequest.objects.get_or_create(
        conversation=conversation,
        defaults={
            "patient": conversation.patient,
            "team_id": conversation.team_id,
            "channel": conversation.channel,
            "state": SurveyRequest.State.SKIPPED if reason else SurveyRequest.State.SCHEDULED,
            "skip_reason": reason,
            "scheduled_for": (conversation.resolved_at or now) + _delay(),
        },
    )
    return survey


def _skip(survey, reason):
    survey.state = SurveyRequest.State.SKIPPED
    survey.skip_reason = reason
    survey.save(update_fields=["state", "skip_reason"])


def _survey_send(survey, *, now):
    conversation = survey.conversation
    if conversation.status != Conversation.Status.RESOLVED:
        _skip(survey, SurveyRequest.SkipReason.REOPENED)
        return
    # Checked again at send time: the patient may have opted out, or another
    # survey may have gone out, during the delay.
    reason = _skip_reason(
        conversation,
        now=now,
        exclude=survey,
        states=[SurveyRequest.State.SENT, SurveyRequest.State.ANSWERED],
    )
    if reason:
        _skip(survey, reason)
        return
    with translation.override(_patient_language(conversation)):
        if survey.channel in LINK_SURVEY_CHANNELS:
            body = _link_question_text(survey_link_url(survey))
        else:
            body = _question_text()
    question = outbound_create(
        conversation=conversation, body=body, metadata={"survey": survey.pk, "question": "csat"}
    )
    survey.question = question
    survey.state = SurveyRequest.State.SENT
    survey.sent_at = now
    survey.save(update_fields=["question", "state", "sent_at"])


def surveys_send_due(*, now=None, limit=200):
    """Send the surveys whose delay has passed. Rows are claimed with SKIP LOCKED,
    so two runs never send the same survey; one that fails is marked failed and
    the rest still go."""
    now = now or timezone.now()
    sent = 0
    with transaction.atomic():
        due = list(
            SurveyRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("conversation", "conversation__patient")
            .filter(state=SurveyRequest.State.SCHEDULED, scheduled_for__lte=now)
            .order_by("scheduled_for")[:limit]
        )
        for survey in due:
            try:
                with transaction.atomic():
                    _survey_send(survey, now=now)
            except Exception as exc:
                # The class name only: a message could quote patient data.
                logger.warning(
                    "survey_send_failed", survey_id=survey.pk, error=exc.__class__.__name__
                )
                survey.state = SurveyRequest.State.FAILED
                survey.skip_reason = exc.__class__.__name__[:24]
                survey.save(update_fields=["state", "skip_reason"])
                continue
            sent += survey.state == SurveyRequest.State.SENT
    return sent


# Every inbound SMS asks whether a survey went to its sender within the reply window;
# nearly always none did. The contacts surveyed recently are kept in each process
# (contactcenter.process_copy): a survey sent is seen everywhere within a second,
# sooner than any patient can answer it. Past SURVEYED_CONTACTS_KEPT contacts, or
# for a message older than the copy's window (a backlog), the database is asked.
SURVEYED_CONTACTS_KEPT = 50_000
# Loaded this much further back than the reply window, so a message that waited a
# while in the queue is still answered from the copy.
_SURVEYED_MARGIN = timedelta(hours=1)


def _recently_surveyed():
    """(since, {(account id, contact index): last sent_at}), or (since, None) when
    there are too many to keep."""
    since = timezone.now() - _reply_window() - _SURVEYED_MARGIN
    rows = list(
        SurveyRequest.objects.filter(sent_at__gte=since)
        .order_by()
        .values_list("conversation__account_id", "conversation__contact_index")
        .annotate(last=Max("sent_at"))[: SURVEYED_CONTACTS_KEPT + 1]
    )
    if len(rows) > SURVEYED_CONTACTS_KEPT:
        return since, None
    return since, MappingProxyType({(account, index): last for account, index, last in rows})


_surveyed = ProcessCopy("reporting_surveyed_contacts", _recently_surveyed).watch(SurveyRequest)


def _survey_sent_within_reply_window(conversation, at):
    """Whether a survey went to this address on this account (its questions are
    sent in the surveyed conversation) early enough for a message at `at` to answer
    it. Nearly every inbound SMS is no answer: it stops here, at the surveys of the
    sender's conversations, instead of reading every message ever sent to them for
    the last one."""
    earliest = at - _reply_window()
    since, surveyed = _surveyed.get()
    if surveyed is not None and earliest >= since:
        last = surveyed.get((conversation.account_id, conversation.contact_index))
        return last is not None and last >= earliest
    # A fixed statement: compiling
    # `SurveyRequest.objects.filter(conversation__account_id=..., conversation__
    # contact_index=..., sent_at__gte=...).exists()` cost several times running it.
    statement, fields = _survey_window_statement()
    values = (conversation.account_id, conversation.contact_index, earliest)
    return sql.exists(
        statement, [sql.param(field, value) for field, value in zip(fields, values, strict=True)]
    )


@functools.cache
def _survey_window_statement():
    quote = connection.ops.quote_name
    survey, conversation = SurveyRequest._meta, Conversation._meta
    account = conversation.get_field("account")
    contact_index = conversation.get_field("contact_index")
    sent_at = survey.get_field("sent_at")
    surveyed = survey.get_field("conversation")
    statement = (
        f"SELECT 1 FROM {quote(survey.db_table)} s "  # noqa: S608
        f"JOIN {quote(conversation.db_table)} c "
        f"ON c.{quote(conversation.pk.column)} = s.{quote(surveyed.column)} "
        f"WHERE c.{quote(account.column)} = %s AND c.{quote(contact_index.column)} = %s "
        f"AND s.{quote(sent_at.column)} >= %s"
    )
    return statement, (account, contact_index, sent_at)


def _last_outbound_id_before(conversation, at):
    """The id of the last message the practice sent to this address on this
    account, on any of its conversations: a reply answers that message. Only the id
    (every inbound SMS asks, and a whole row would be read and decrypted for it)."""
    return (
        Interaction.objects.filter(
            conversation__account_id=conversation.account_id,
            conversation__contact_index=conversation.contact_index,
            channel=conversation.channel,
            direction=Interaction.Direction.OUTBOUND,
            occurred_at__lte=at,
        )
        .order_by("-occurred_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )


def _close_if_only_the_answer(*, reply, survey):
    """A bare score arrives after the surveyed conversation was resolved, so it
    opens a new conversation. When that conversation holds nothing but the
    answer, nobody needs to work it: close it, with an event saying why."""
    conversation = reply.conversation
    if conversation.pk == survey.conversation_id:
        return None
    if conversation.status not in Conversation.ACTIVE_STATUSES:
        return None
    anything_else = (
        Interaction.objects.filter(conversation=conversation)
        .exclude(pk=reply.pk)
        .filter(Q(direction=Interaction.Direction.INBOUND) | Q(author__isnull=False))
        .exists()
    )
    if anything_else:
        return None
    closed = conversation_resolve(
        conversation=conversation,
        note="survey answer recorded; closed automatically",
        metadata={"change": "survey_answer_closed", "survey": survey.pk},
    )
    return conversation if closed else None


def _answer(body):
    match = _ANSWER.fullmatch(body or "")
    return int(match.group(1)) if match else None


def survey_reply_record(*, interaction):
    """Receiver of interaction_received: an SMS reply to a survey question. A
    digit 1-5 answering the satisfaction question (or the effort question) is
    recorded on the surveyed conversation; the first text after a score is its
    comment, stored encrypted with its sentiment. Anything else is an ordinary
    message. The same interaction again records nothing new."""
    if (
        interaction.channel not in REPLY_SURVEY_CHANNELS
        or interaction.direction != Interaction.Direction.INBOUND
        or interaction.kind != Interaction.Kind.MESSAGE
    ):
        return None
    conversation = interaction.conversation
    if not conversation.contact_index:
        return None
    if not _survey_sent_within_reply_window(conversation, interaction.occurred_at):
        return None
    question_id = _last_outbound_id_before(conversation, interaction.occurred_at)
    if question_id is None:
        return None
    with transaction.atomic():
        survey = (
            SurveyRequest.objects.select_for_update(of=("self",))
            .filter(Q(question_id=question_id) | Q(response__effort_question_id=question_id))
            .first()
        )
        if survey is None or survey.sent_at is None:
            return None
        if interaction.occurred_at > survey.sent_at + _reply_window():
            return None
        if SurveyReply.objects.filter(interaction=interaction).exists():
            return None
        response = SurveyResponse.objects.filter(survey=survey).first()
        value = _answer(interaction.body)
        if value is not None:
            part = _record_score(survey, response, question_id, value, interaction)
        else:
            part = _record_comment(response, interaction)
        if part is None:
            return None
        closed = None
        if part != SurveyReply.Part.COMMENT:
            closed = _close_if_only_the_answer(reply=interaction, survey=survey)
        return SurveyReply.objects.create(
            interaction=interaction, survey=survey, part=part, closed_conversation=closed
        )


def _response_create(survey, *, score, received_at, comment=""):
    """The one way an answer is stored, whether it came as an SMS reply or by the
    link: counted for the team and channel of the survey, which is answered."""
    response = SurveyResponse(
        survey=survey,
        conversation_id=survey.conversation_id,
        team_id=survey.team_id,
        channel=survey.channel,
        score=score,
        received_at=received_at,
    )
    if comment:
        _comment_set(response, comment)
    response.save(force_insert=True)
    survey.state = SurveyRequest.State.ANSWERED
    survey.save(update_fields=["state"])
    return response


def _comment_set(response, text):
    response.comment = text
    response.comment_sentiment = score_text(text)


def _record_score(survey, response, question_id, value, interaction):
    if response is None and question_id == survey.question_id:
        response = _response_create(survey, score=value, received_at=interaction.occurred_at)
        if getattr(settings, "CSAT_ASK_EFFORT", False):
            with translation.override(_patient_language(survey.conversation)):
                effort = _effort_text()
            response.effort_question = outbound_create(
                conversation=survey.conversation,
                body=effort,
                metadata={"survey": survey.pk, "question": "effort"},
            )
            response.save(update_fields=["effort_question"])
        return SurveyReply.Part.SCORE
    if (
        response is not None
        and response.effort_question_id == question_id
        and response.effort_score is None
    ):
        response.effort_score = value
        response.save(update_fields=["effort_score"])
        return SurveyReply.Part.EFFORT
    # A second digit (a correction, a typo) is not taken: the first answer stands.
    return None


def _record_comment(response, interaction):
    if response is None or response.comment:
        return None
    if interaction.occurred_at > response.received_at + _comment_window():
        return None
    _comment_set(response, interaction.body)
    response.save(update_fields=["comment", "comment_sentiment"])
    return SurveyReply.Part.COMMENT


# --- Survey links (email and portal) -----------------------------------------------


class SurveyLinkInvalid(Exception):
    """A link we did not make (tampered, truncated), or of no survey awaiting a
    link answer."""


class SurveyLinkExpired(SurveyLinkInvalid):
    """A genuine link, past the reply window."""


def survey_link_url(survey):
    """The survey's personal link. The token holds the survey's id and when it was
    signed, nothing about the patient; the signature makes it unguessable."""
    token = signing.dumps(survey.pk, salt=SURVEY_LINK_SALT)
    return settings.PUBLIC_BASE_URL + reverse("survey-link", args=[token])


def survey_for_link(token, *, lock=False):
    """The survey a link answers, with one query. Raises SurveyLinkExpired after
    the reply window, SurveyLinkInvalid for anything else that is not a link of
    a sent (or answered) email or portal survey."""
    try:
        # The signed time refuses an old link before any query is made.
        survey_id = signing.loads(token, salt=SURVEY_LINK_SALT, max_age=_reply_window())
    except signing.SignatureExpired:
        raise SurveyLinkExpired from None
    except signing.BadSignature:
        raise SurveyLinkInvalid from None
    surveys = SurveyRequest.objects.filter(
        channel__in=LINK_SURVEY_CHANNELS,
        state__in=[SurveyRequest.State.SENT, SurveyRequest.State.ANSWERED],
    )
    if lock:
        surveys = surveys.select_for_update()
    survey = surveys.filter(pk=survey_id).first()
    if survey is None:
        raise SurveyLinkInvalid
    # The same window as an SMS reply, counted from when the survey went out.
    if timezone.now() > survey.sent_at + _reply_window():
        raise SurveyLinkExpired
    return survey


def survey_link_answer_record(*, token, score, comment=""):
    """The answer a patient gave on the survey page: the score, and the comment
    (stored encrypted) with its sentiment. The first answer stands: a later one
    returns None and changes nothing. Raises what survey_for_link raises."""
    with transaction.atomic():
        # Locked, so two submits at once (a double click) record one answer.
        survey = survey_for_link(token, lock=True)
        if survey.state == SurveyRequest.State.ANSWERED:
            return None
        return _response_create(survey, score=score, received_at=timezone.now(), comment=comment)
