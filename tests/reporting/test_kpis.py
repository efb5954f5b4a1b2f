"""The KPI report: every figure of a known week, business hours, rollups against
live computation, access, CSV and the terminal command."""

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from channels_app.models import Callback, CallDetail, Conversation, Interaction
from contactcenter import roles
from patients.models import Channel
from reporting.models import ADDITIVE_KEYS, KpiDailyRollup, KpiRollupDay
from reporting.selectors import kpi_report, kpi_today
from reporting.serializers import KpiReportSerializer
from reporting.services import kpi_rollup_days, kpi_rollup_intraday, kpi_rollup_nightly
from tests.factories import make_staff, token_for
from tests.reporting.conftest import at, call, conversation, event, message, patient_with_phone
from understanding.models import SelfServiceResolution

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/kpis/"
Q = CallDetail.QueueResult
OUT = Interaction.Direction.OUTBOUND
WEEK = {"since": date(2025, 3, 3), "until": date(2025, 3, 9)}


@pytest.fixture
def week(north, south, sms_line, north_agent):
    """Monday 3 to Sunday 9 March 2025 on the North SMS line (24/7: no business
    hours), plus one South conversation. Expected figures are in the tests."""
    p1, p2, p3, p4, p5 = (patient_with_phone(north, f"+1415555010{n}") for n in range(1, 6))
    line = {"account": sms_line}

    # A: replied in 10 min, resolved after 2 h; P1's next contact is 8 days later.
    a = conversation(
        north,
        patient=p1,
        address="+14155550101",
        opened=at(3, 9),
        resolved=at(3, 11),
        sentiment_first=-0.5,
        sentiment_latest=0.3,
        **line,
    )
    message(a, when=at(3, 9))
    message(a, when=at(3, 9, 10), direction=OUT, author=north_agent)
    later = conversation(north, patient=p1, address="+14155550101", opened=at(11, 10), **line)
    message(later, when=at(11, 10))

    # B: escalated, resolved a day later; P2 writes again 4 days after: not FCR.
    b = conversation(
        north,
        patient=p2,
        address="+14155550102",
        opened=at(3, 10),
        resolved=at(4, 10),
        escalated=True,
        sentiment_first=0.2,
        sentiment_latest=-0.2,
        **line,
    )
    message(b, when=at(3, 10))
    message(b, when=at(3, 10, 30), direction=OUT, author=north_agent)
    again = conversation(north, patient=p2, address="+14155550102", opened=at(8, 9), **line)
    message(again, when=at(8, 9))

    # C: resolved, reopened 44 h later (inside 7 days), resolved again: not FCR.
    c = conversation(
        north, patient=p3, address="+14155550103", opened=at(3, 12), resolved=at(5, 10), **line
    )
    message(c, when=at(3, 12))
    message(c, when=at(3, 12, 20), direction=OUT, author=north_agent)
    event(c, when=at(3, 13), change="status open → resolved")
    event(c, when=at(5, 9), change="reopened")
    event(c, when=at(5, 10), change="status open → resolved")

    # D: opened in February, reopened 10 days after its resolution (outside 7
    # days), resolved again on the 3rd: FCR, and counted as reopened.
    d = conversation(
        north,
        patient=p4,
        address="+14155550104",
        opened=at(20, 9, month=2),
        resolved=at(3, 15),
        **line,
    )
    message(d, when=at(20, 9, month=2))
    message(d, when=at(20, 9, 5, month=2), direction=OUT, author=north_agent)
    event(d, when=at(20, 10, month=2), change="status open → resolved")
    event(d, when=at(2, 9), change="reopened")
    event(d, when=at(3, 15), change="status open → resolved")

    # E: still open.
    e = conversation(north, patient=p5, address="+14155550105", opened=at(4, 9), **line)
    message(e, when=at(4, 9))

    # J: an unknown number, resolved without a reply; the same number writes the
    # next day: not FCR (matched on the address, there is no patient).
    j = conversation(north, address="+14155550109", opened=at(6, 9), resolved=at(6, 12), **line)
    message(j, when=at(6, 9))
    j2 = conversation(north, address="+14155550109", opened=at(7, 9), **line)
    message(j2, when=at(7, 9))

    # South: resolved on the 3rd; only an admin's report includes it.
    s = conversation(south, address="+14155550190", opened=at(3, 9), resolved=at(3, 10))
    message(s, when=at(3, 9))


def north_report(north, **kwargs):
    return kpi_report(**{**WEEK, "team_ids": [north.pk], **kwargs})


def sources(*, rolled=0, partly=0, until=None, live=0):
    return {
        "rolled_up_days": rolled,
        "partly_rolled_up_days": partly,
        "rolled_up_until": until,
        "live_days": live,
    }


def test_conversation_figures_of_a_known_week(week, north):
    figures = north_report(north)["period"]["conversations"]

    assert figures == {
        "opened": 7,
        "resolved": 5,
        "first_response_seconds": {"count": 4, "median": 900.0, "p90": 1620.0},
        "resolution_seconds": {"count": 5, "median": 86400.0, "p90": 649440.0},
        "fcr": 2,
        "fcr_rate": 0.4,
        "escalated": 1,
        "escalation_rate": 0.2,
        "resolved_without_escalation": 4,
        "resolved_without_escalation_rate": 0.8,
        "reopened": 2,
        "reopen_rate": 0.4,
    }


def test_sentiment_delta_is_the_mean_over_resolved_conversations_with_scores(week, north):
    assert north_report(north)["period"]["sentiment"] == {"conversations": 2, "mean_delta": 0.2}


def test_fcr_counts_a_reopen_only_inside_seven_days_of_the_resolution(week, north):
    days = {row["start"]: row["conversations"] for row in north_report(north)["intervals"]}

    # The 3rd: A (next contact after 8 days) and D (reopened after 10 days) are FCR.
    assert (days[date(2025, 3, 3)]["resolved"], days[date(2025, 3, 3)]["fcr"]) == (2, 2)
    assert days[date(2025, 3, 3)]["reopened"] == 1
    # The 4th: B, new contact 4 days later. The 5th: C, reopened after 44 h.
    assert (days[date(2025, 3, 4)]["resolved"], days[date(2025, 3, 4)]["fcr"]) == (1, 0)
    assert (days[date(2025, 3, 5)]["resolved"], days[date(2025, 3, 5)]["fcr"]) == (1, 0)
    assert days[date(2025, 3, 5)]["reopened"] == 1
    # The 6th: J, the same unknown number wrote the next day.
    assert (days[date(2025, 3, 6)]["resolved"], days[date(2025, 3, 6)]["fcr"]) == (1, 0)


def test_day_buckets_hold_their_own_figures_and_percentiles(week, north):
    report = north_report(north)
    days = {row["start"]: row for row in report["intervals"]}

    assert [row["start"] for row in report["intervals"]] == [date(2025, 3, n) for n in range(3, 10)]
    third = days[date(2025, 3, 3)]["conversations"]
    assert third["opened"] == 3
    assert third["first_response_seconds"] == {"count": 2, "median": 450.0, "p90": 570.0}
    assert third["resolution_seconds"] == {"count": 2, "median": 489600.0, "p90": 875520.0}
    quiet = days[date(2025, 3, 9)]
    assert quiet["conversations"]["opened"] == 0
    assert quiet["conversations"]["fcr_rate"] is None
    assert quiet["conversations"]["first_response_seconds"] == {
        "count": 0,
        "median": None,
        "p90": None,
    }


def test_week_buckets_are_iso_weeks_clipped_to_the_period(week, north):
    report = north_report(north, since=date(2025, 3, 1), interval="week")

    assert [(row["start"], row["end"]) for row in report["intervals"]] == [
        (date(2025, 3, 1), date(2025, 3, 2)),
        (date(2025, 3, 3), date(2025, 3, 9)),
    ]
    assert report["intervals"][1]["conversations"] == report["period"]["conversations"]
    assert report["intervals"][0]["conversations"]["resolved"] == 0


def test_channel_filter_keeps_one_channel(week, north):
    assert north_report(north, channel=Channel.EMAIL)["period"]["conversations"]["opened"] == 0
    assert north_report(north, channel=Channel.SMS)["period"]["conversations"]["opened"] == 7


def test_call_figures_exclude_short_abandons(north, south, voice_line):
    for result, wait in [
        (Q.ANSWERED, 5),
        (Q.ANSWERED, 25),
        (Q.ANSWERED, 45),
        (Q.ABANDONED, 3),  # short
        (Q.ABANDONED, 9),  # short: under 10 s
        (Q.ABANDONED, 10),  # counted: the threshold itself is not short
        (Q.ABANDONED, 60),
        (Q.VOICEMAIL, None),  # after hours: never queued, not offered
        (Q.VOICEMAIL, 120),  # left the queue for voicemail: offered
        (Q.MISSED, None),
    ]:
        call(north, when=at(3, 10), result=result, wait=wait, account=voice_line)
    call(north, when=at(4, 10), result=Q.ANSWERED, wait=15, account=voice_line)
    call(south, when=at(3, 10), result=Q.ANSWERED, wait=0)

    report = north_report(north)
    third = next(row for row in report["intervals"] if row["start"] == date(2025, 3, 3))

    assert third["calls"] == {
        "offered": 6,
        "answered": 3,
        "abandoned": 2,
        "short_abandoned": 2,
        "abandonment_rate": 0.3333,
        "asa_seconds": 25.0,
        "service_level": 0.3333,
    }
    assert report["period"]["calls"] == {
        "offered": 7,
        "answered": 4,
        "abandoned": 2,
        "short_abandoned": 2,
        "abandonment_rate": 0.2857,
        "asa_seconds": 22.5,
        "service_level": 0.4286,
    }
    assert north_report(north, channel=Channel.SMS)["period"]["calls"]["offered"] == 0


def _offered_call(team, *, when, result, wait, line, address):
    interaction = call(team, when=when, result=result, wait=wait, account=line, address=address)
    CallDetail.objects.filter(pk=interaction.pk).update(callback_offered_at=when)
    return CallDetail.objects.select_related("interaction__conversation").get(pk=interaction.pk)


def _callback(detail, *, requested, due, dialled=None):
    conv = detail.interaction.conversation
    return Callback.objects.create(
        conversation=conv,
        call=detail,
        account=conv.account,
        team=conv.team,
        phone=conv.contact_address,
        phone_index=conv.contact_index,
        status=Callback.Status.DONE if dialled else Callback.Status.PENDING,
        queued_at=requested,
        requested_at=requested,
        due_at=due,
        dialled_at=dialled,
    )


def _callbacks_week(north, line):
    """On the 3rd: one caller heard the offer and waited to be answered, two took a
    callback (one made in 19 minutes within its window, one an hour later, 30
    minutes late), one hung up without hearing the offer. On the 4th a callback
    not made yet."""
    _offered_call(
        north, when=at(3, 9), result=Q.ANSWERED, wait=20, line=line, address="+14155550181"
    )
    made = _offered_call(
        north, when=at(3, 10), result=Q.CALLBACK, wait=40, line=line, address="+14155550182"
    )
    _callback(made, requested=at(3, 10, 1), due=at(3, 10, 31), dialled=at(3, 10, 20))
    late = _offered_call(
        north, when=at(3, 11), result=Q.CALLBACK, wait=20, line=line, address="+14155550183"
    )
    _callback(late, requested=at(3, 11), due=at(3, 11, 30), dialled=at(3, 12))
    call(north, when=at(3, 12), result=Q.ABANDONED, wait=60, account=line)
    waiting = _offered_call(
        north, when=at(4, 9), result=Q.CALLBACK, wait=30, line=line, address="+14155550184"
    )
    _callback(waiting, requested=at(4, 9, 1), due=at(4, 9, 31))


def test_callback_figures_and_calls_that_took_a_callback_are_not_abandoned(north, voice_line):
    _callbacks_week(north, voice_line)

    report = north_report(north)
    third = next(row for row in report["intervals"] if row["start"] == date(2025, 3, 3))

    assert third["callbacks"] == {
        "offered": 3,
        "accepted": 2,
        "acceptance_rate": 0.6667,
        "made": 2,
        "made_within_window": 1,
        "within_window_rate": 0.5,
        "mean_time_to_callback_seconds": 2370.0,  # (19 min + 60 min) / 2
    }
    assert (third["calls"]["offered"], third["calls"]["abandoned"]) == (4, 1)
    assert report["period"]["callbacks"] == {
        "offered": 4,
        "accepted": 3,
        "acceptance_rate": 0.75,
        "made": 2,
        "made_within_window": 1,
        "within_window_rate": 0.3333,
        "mean_time_to_callback_seconds": 2370.0,
    }
    assert north_report(north, channel=Channel.SMS)["period"]["callbacks"]["accepted"] == 0
    kpi_rollup_days(first_day=date(2025, 3, 3), last_day=date(2025, 3, 9))
    assert north_report(north)["period"]["callbacks"] == report["period"]["callbacks"]


def test_call_thresholds_come_from_settings(north, voice_line, settings):
    settings.KPI_SHORT_ABANDON_SECONDS = 5
    settings.KPI_SERVICE_LEVEL_SECONDS = 20
    for result, wait in [(Q.ANSWERED, 15), (Q.ANSWERED, 25), (Q.ABANDONED, 4), (Q.ABANDONED, 6)]:
        call(north, when=at(3, 10), result=result, wait=wait, account=voice_line)

    report = north_report(north)

    assert report["parameters"]["short_abandon_seconds"] == 5
    assert report["period"]["calls"]["offered"] == 3
    assert report["period"]["calls"]["short_abandoned"] == 1
    assert report["period"]["calls"]["service_level"] == 0.3333


def _friday_to_monday(north, sms_line, north_agent):
    """A message at 16:50 on Friday 7 March, answered 09:20 Monday, resolved 10:00."""
    patient = patient_with_phone(north, "+14155550101")
    conv = conversation(
        north,
        patient=patient,
        address="+14155550101",
        account=sms_line,
        opened=at(7, 16, 50),
        resolved=at(10, 10),
    )
    message(conv, when=at(7, 16, 50))
    message(conv, when=at(10, 9, 20), direction=OUT, author=north_agent)


def test_response_times_count_business_hours_of_the_team(north, sms_line, north_agent):
    business_hours = apps.get_model("escalation", "BusinessHours")
    business_hours.objects.create(
        team=north,
        time_zone="UTC",
        weekly={str(day): [["09:00", "17:00"]] for day in range(5)},
    )
    _friday_to_monday(north, sms_line, north_agent)

    report = kpi_report(since=date(2025, 3, 10), until=date(2025, 3, 10), team_ids=[north.pk])
    figures = report["period"]["conversations"]

    # 10 minutes on Friday, then 20 (reply) or 60 (resolution) on Monday.
    assert figures["first_response_seconds"] == {"count": 1, "median": 1800.0, "p90": 1800.0}
    assert figures["resolution_seconds"] == {"count": 1, "median": 4200.0, "p90": 4200.0}


def test_a_team_without_business_hours_counts_around_the_clock(north, sms_line, north_agent):
    _friday_to_monday(north, sms_line, north_agent)

    report = kpi_report(since=date(2025, 3, 10), until=date(2025, 3, 10), team_ids=[north.pk])
    figures = report["period"]["conversations"]

    assert figures["first_response_seconds"]["median"] == 232200.0  # 2 d 16 h 30 min
    assert figures["resolution_seconds"]["median"] == 234600.0


def test_rolled_up_report_equals_the_live_one(week, north, voice_line):
    call(north, when=at(3, 10), result=Q.ANSWERED, wait=12, account=voice_line)
    call(north, when=at(5, 10), result=Q.ABANDONED, wait=30, account=voice_line)
    live = {
        interval: north_report(north, interval=interval, use_rollups=False)
        for interval in ("day", "week")
    }

    kpi_rollup_days(first_day=date(2025, 2, 20), last_day=date(2025, 3, 12))

    for interval in ("day", "week"):
        rolled = north_report(north, interval=interval)
        assert rolled["sources"] == sources(rolled=7)
        assert live[interval]["sources"] == sources(live=7)
        assert {**rolled, "sources": None} == {**live[interval], "sources": None}


def test_report_runs_the_same_statements_whatever_the_volume(week, north, sms_line, north_agent):
    def statements(**kwargs):
        with CaptureQueriesContext(connection) as captured:
            north_report(north, **kwargs)
        # What each statement reads (savepoint names differ from run to run).
        return [query["sql"].split(" FROM ")[-1].split('"s')[0][:40] for query in captured]

    live = statements(use_rollups=False)
    kpi_rollup_days(first_day=date(2025, 3, 3), last_day=date(2025, 3, 9))
    rolled = statements()
    for n in range(20):
        more = conversation(
            north,
            address=f"+1415555{n:04d}",
            opened=at(4, 9),
            resolved=at(4, 11),
            account=sms_line,
        )
        message(more, when=at(4, 9))
        message(more, when=at(4, 9, 5), direction=OUT, author=north_agent)
    kpi_rollup_days(first_day=date(2025, 3, 3), last_day=date(2025, 3, 9))

    assert statements(use_rollups=False) == live
    assert statements() == rolled
    # Live: the planner settings (once, though the computation nests in the
    # report), then calls, callbacks, opened, resolved, durations, business hours
    # (in a savepoint), surveys sent and answered, self-service answers. Rolled up:
    # the settings, the days, the sums, the samples.
    assert (len(live), len(rolled)) == (12, 4)


def test_self_service_counts_automated_resolutions_and_returns_within_a_day(north, south, sms_line):
    def answered(team, when, came_back=None):
        closed = conversation(
            team, address="+14155550150", opened=when, resolved=when, account=sms_line
        )
        SelfServiceResolution.objects.create(
            conversation=closed,
            team=team,
            channel=closed.channel,
            account_id=sms_line.pk,
            contact_index=closed.contact_index,
            resolved_at=when,
            came_back_at=came_back,
        )

    answered(north, at(3, 9), came_back=at(3, 15))
    answered(north, at(4, 9), came_back=at(5, 15))  # 30 hours later: not counted
    answered(north, at(5, 9))
    answered(south, at(5, 9), came_back=at(5, 10))

    live = north_report(north, use_rollups=False)
    assert live["period"]["self_service"] == {
        "resolved": 3,
        "came_back_within_24h": 1,
        "came_back_rate": 0.3333,
    }
    assert [day["self_service"]["resolved"] for day in live["intervals"]] == [1, 1, 1, 0, 0, 0, 0]
    assert live["period"]["conversations"]["resolved"] == 3

    kpi_rollup_days(first_day=date(2025, 3, 3), last_day=date(2025, 3, 9))
    rolled = north_report(north)
    assert rolled["sources"]["rolled_up_days"] == 7
    assert rolled["period"]["self_service"] == live["period"]["self_service"]


def test_rollup_is_an_idempotent_upsert(week, north):
    first = kpi_rollup_days(first_day=date(2025, 3, 1), last_day=date(2025, 3, 9))
    stored = KpiDailyRollup.objects.values_list(
        "day", "team_id", "channel", *ADDITIVE_KEYS, "first_response_samples", "resolution_samples"
    )
    rows = sorted(stored)

    again = kpi_rollup_days(first_day=date(2025, 3, 1), last_day=date(2025, 3, 9))

    assert first == again
    assert sorted(stored.all()) == rows
    assert KpiRollupDay.objects.count() == 9


def test_rollup_drops_a_group_that_has_no_figures_any_more(week, north):
    kpi_rollup_days(first_day=date(2025, 3, 6), last_day=date(2025, 3, 6))
    assert KpiDailyRollup.objects.filter(day=date(2025, 3, 6)).exists()
    Conversation.objects.filter(created_at__date=date(2025, 3, 6)).update(
        created_at=at(1), status="open", resolved_at=None
    )

    kpi_rollup_days(first_day=date(2025, 3, 6), last_day=date(2025, 3, 6))

    assert not KpiDailyRollup.objects.filter(day=date(2025, 3, 6)).exists()


def test_nightly_rollup_covers_history_then_recomputes_the_settling_days(week, north):
    assert kpi_rollup_nightly(today=date(2025, 3, 12)) == 20  # 20 February to 11 March
    assert KpiRollupDay.objects.order_by("day").first().day == date(2025, 2, 20)

    assert kpi_rollup_nightly(today=date(2025, 3, 13)) == 8  # 5 to 12 March
    assert KpiRollupDay.objects.order_by("-day").first().day == date(2025, 3, 12)


def test_today_is_computed_live_next_to_rolled_up_days(north, sms_line):
    today = kpi_today()
    yesterday = today - timedelta(days=1)
    kpi_rollup_days(first_day=yesterday, last_day=yesterday)
    conv = conversation(north, account=sms_line, opened=timezone.now())
    message(conv, when=timezone.now())

    report = kpi_report(since=yesterday, until=today, team_ids=[north.pk])

    assert report["sources"] == sources(rolled=1, live=1)
    assert report["period"]["conversations"]["opened"] == 1


def test_intraday_rollup_and_the_live_rest_of_the_day_equal_the_live_report(
    week, north, voice_line
):
    call(north, when=at(5, 9, 30), result=Q.ANSWERED, wait=12, account=voice_line)
    call(north, when=at(5, 11), result=Q.ABANDONED, wait=30, account=voice_line)
    live = {
        interval: north_report(north, interval=interval, use_rollups=False)
        for interval in ("day", "week")
    }

    kpi_rollup_intraday(now=at(5, 10, 5))

    marker = KpiRollupDay.objects.get()
    assert (marker.day, marker.covers_until) == (date(2025, 3, 5), at(5, 10))
    # The rollup holds the closed quarters only: the 9:30 call, not the 11:00 one;
    # C's resolution at 10:00 sharp belongs to the hour still open.
    stored = KpiDailyRollup.objects.filter(day=date(2025, 3, 5))
    assert sum(stored.values_list("calls_answered", flat=True)) == 1
    assert sum(stored.values_list("calls_abandoned", flat=True)) == 0
    assert sum(stored.values_list("conversations_resolved", flat=True)) == 0
    for interval in ("day", "week"):
        report = north_report(north, interval=interval)
        assert report["sources"] == sources(partly=1, until=at(5, 10), live=6)
        assert {**report, "sources": None} == {**live[interval], "sources": None}


def test_intraday_rollup_recomputes_the_whole_day_until_the_nightly_one_replaces_it(
    week, north, sms_line
):
    kpi_rollup_intraday(now=at(5, 10, 5))
    late = conversation(north, address="+14155550177", opened=at(5, 9, 59), account=sms_line)
    message(late, when=at(5, 9, 59))  # committed after that run, in its closed quarters

    opened = north_report(north)["intervals"][2]["conversations"]["opened"]
    assert (
        opened
        == north_report(north, use_rollups=False)["intervals"][2]["conversations"]["opened"] - 1
    )

    kpi_rollup_intraday(now=at(5, 11, 5))
    assert KpiRollupDay.objects.get().covers_until == at(5, 11)
    assert {**north_report(north), "sources": None} == {
        **north_report(north, use_rollups=False),
        "sources": None,
    }

    kpi_rollup_days(first_day=date(2025, 3, 5), last_day=date(2025, 3, 5))
    assert kpi_rollup_intraday(now=at(5, 12, 5)) == 0  # the whole day stays whole
    assert KpiRollupDay.objects.get().covers_until is None
    assert north_report(north)["sources"] == sources(rolled=1, live=6)


def test_intraday_rollup_waits_for_the_first_hour_to_close(week):
    assert kpi_rollup_intraday(now=at(5, 5, 10)) == 0  # 0:10 in New York, the KPI zone
    assert not KpiRollupDay.objects.exists()


def test_intraday_rollup_closes_quarters_of_the_kpi_time_zones_day(week, north, settings):
    settings.KPI_TIME_ZONE = "Asia/Kolkata"  # UTC+5:30

    kpi_rollup_intraday(now=at(5, 20, 10))  # 1:40 on the 6th in Kolkata

    marker = KpiRollupDay.objects.get()
    assert (marker.day, marker.covers_until) == (date(2025, 3, 6), at(5, 20))  # 1:30 there
    report = north_report(north)
    assert report["sources"] == sources(partly=1, until=at(5, 20), live=6)
    assert {**report, "sources": None} == {
        **north_report(north, use_rollups=False),
        "sources": None,
    }


def test_nightly_rollup_is_not_misled_by_a_partly_rolled_up_day(week):
    kpi_rollup_intraday(now=at(12, 15))

    # As on a first run: all history, 20 February to 11 March, not the last 8 days.
    assert kpi_rollup_nightly(today=date(2025, 3, 12)) == 20


def test_a_whole_day_rollup_of_today_does_not_freeze_today(north, sms_line):
    today = kpi_today()
    kpi_rollup_days(first_day=today, last_day=today)
    conv = conversation(north, account=sms_line, opened=timezone.now())
    message(conv, when=timezone.now())

    report = kpi_report(since=today, until=today, team_ids=[north.pk])

    assert report["sources"] == sources(live=1)
    assert report["period"]["conversations"]["opened"] == 1


# --- The endpoint -----------------------------------------------------------------

QUERY = {"since": "2025-03-03", "until": "2025-03-09"}


def test_supervisor_sees_their_teams_only(client, week, north, north_supervisor):
    response = client.get(URL, QUERY, **token_for(north_supervisor))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["teams"] == [north.pk]
    assert body["period"]["conversations"]["resolved"] == 5
    assert body["period"]["conversations"]["first_response_seconds"]["median"] == 900.0


def test_supervisor_asking_for_another_team_gets_403(client, week, south, north_supervisor):
    response = client.get(URL, {**QUERY, "team": south.pk}, **token_for(north_supervisor))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize("role", [roles.AGENT, roles.CLINICIAN, roles.COMPLIANCE])
def test_other_roles_get_403(client, week, north, role):
    user = make_staff(f"someone-{role}", role=role, teams=[north])

    assert client.get(URL, QUERY, **token_for(user)).status_code == 403


def test_anonymous_gets_401(client, week):
    assert client.get(URL, QUERY).status_code == 401


def test_admin_sees_every_team_or_one(client, week, south, admin):
    everyone = client.get(URL, QUERY, **token_for(admin)).json()
    only_south = client.get(URL, {**QUERY, "team": south.pk}, **token_for(admin)).json()

    assert everyone["teams"] is None
    assert everyone["period"]["conversations"]["resolved"] == 6
    assert only_south["period"]["conversations"]["resolved"] == 1


def test_admin_asking_for_an_unknown_team_gets_400(client, week, admin):
    response = client.get(URL, {**QUERY, "team": 999_999}, **token_for(admin))

    assert response.status_code == 400
    assert "team" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2025-03-09", "until": "2025-03-03"},
        {"since": "2023-01-01", "until": "2025-03-03"},
        {"interval": "month"},
        {"channel": "fax"},
        {"since": "yesterday"},
    ],
)
def test_bad_parameters_get_400(client, admin, query):
    response = client.get(URL, query, **token_for(admin))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_csv_export_has_a_row_per_interval_and_one_for_the_period(
    client, week, north, north_supervisor
):
    response = client.get(URL, {**QUERY, "format": "csv"}, **token_for(north_supervisor))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="kpis-2025-03-03-2025-03-09.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["scope"] for row in rows] == ["interval"] * 7 + ["period"]
    period = rows[-1]
    assert period["conversations.resolved"] == "5"
    assert period["conversations.first_response_seconds.median"] == "900.0"
    assert period["calls.abandonment_rate"] == ""


def test_csv_request_with_an_error_answers_in_json(client):
    response = client.get(URL, {"format": "csv"})

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"


def test_answer_holds_no_patient_data(client, week, north_supervisor):
    body = client.get(URL, QUERY, **token_for(north_supervisor)).content.decode()

    assert "+1415555" not in body
    assert "patient" not in body


def test_schema_describes_every_metric(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/reports/kpis/"]["get"]

    for term in (
        "abandonment_rate",
        "asa_seconds",
        "service_level",
        "fcr",
        "mean_delta",
        "satisfied_share",
        "ces_mean",
        "Business time",
    ):
        assert term in operation["description"]
    assert "text/csv" in operation["responses"]["200"]["content"]


def test_readme_metrics_section_holds_the_definitions_word_for_word():
    root = Path(__file__).resolve().parents[2]
    definitions = (root / "reporting" / "METRICS.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]

    assert definitions.strip() in section, (
        "README's Metrics section must hold reporting/METRICS.md word for word: copy it"
    )


def test_kpi_report_command_prints_a_table(week, north):
    out = io.StringIO()

    call_command(
        "kpi_report",
        "--since",
        "2025-03-03",
        "--until",
        "2025-03-09",
        "--team",
        "North",
        stdout=out,
    )

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["metric", "2025-03-03..2025-03-09"]
    assert any(line.split() == ["conversations.fcr_rate", "0.4"] for line in lines)
    assert any(line.split() == ["conversations.resolved", "5"] for line in lines)
    assert any(
        line.split() == ["conversations.first_response_seconds.median", "900"] for line in lines
    )


def test_answer_has_the_documented_shape(client, week, north, north_supervisor):
    body = client.get(URL, QUERY, **token_for(north_supervisor)).json()

    documented = KpiReportSerializer(kpi_report(**WEEK, team_ids=[north.pk])).data
    assert body == json.loads(json.dumps(documented))


def test_beat_schedule_runs_the_reporting_tasks(settings):
    from config.celery import app

    # What a worker and beat do when they start: import every app's tasks module.
    app.loader.import_default_modules()
    for entry in ("nightly-kpi-rollup", "intraday-kpi-rollup", "send-due-surveys"):
        assert settings.CELERY_BEAT_SCHEDULE[entry]["task"] in app.tasks


def test_nightly_task_rolls_up_the_days_before_today(week):
    from reporting.tasks import nightly_kpi_rollup

    nightly_kpi_rollup()

    assert KpiRollupDay.objects.order_by("-day").first().day == kpi_today() - timedelta(days=1)
    assert KpiRollupDay.objects.order_by("day").first().day == date(2025, 2, 20)
