import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactcenter.templating import render_template, template_placeholders
from reminders.planning import (
    DEFAULT_GRACE,
    SKIP_QUIET_HOURS,
    SKIP_SAME_TIME,
    SKIP_TOO_LATE,
    PlannedReminder,
    format_local,
    plan_reminders,
    quiet_hours_end,
    sms_segments,
)

LA_NAME = "America/Los_Angeles"
LOS_ANGELES = ZoneInfo(LA_NAME)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def _la(year, month, day, hour=0, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=LOS_ANGELES)


def _hours(*values):
    return [timedelta(hours=value) for value in values]


def _plan(starts_at, offsets, *, now=LONG_AGO, **options):
    return plan_reminders(
        starts_at=starts_at, now=now, offsets=offsets, time_zone=LA_NAME, **options
    )


def _local_send_times(planned):
    return [reminder.send_at.astimezone(LOS_ANGELES) for reminder in planned]


# Send times and quiet hours.


def test_monday_0900_appointment_gets_friday_sunday_and_monday_0800_reminders():
    planned = _plan(_la(2025, 6, 16, 9), _hours(72, 24, 2))
    assert [reminder.skip_reason for reminder in planned] == [None, None, None]
    assert [reminder.offset for reminder in planned] == _hours(72, 24, 2)
    assert _local_send_times(planned) == [
        _la(2025, 6, 13, 9),
        _la(2025, 6, 15, 9),
        _la(2025, 6, 16, 8),  # 07:00 is in quiet hours, so it waits until they end
    ]


def test_send_times_are_aware_utc():
    planned = _plan(_la(2025, 6, 16, 9), _hours(24))
    assert planned[0].send_at.tzinfo is UTC
    assert planned[0].send_at == datetime(2025, 6, 15, 16, 0, tzinfo=UTC)


def test_reminder_moved_out_of_quiet_hours_is_sent_if_still_before_the_appointment():
    planned = _plan(_la(2025, 6, 16, 8, 30), _hours(2))
    assert planned == [PlannedReminder(timedelta(hours=2), _la(2025, 6, 16, 8), None)]


def test_reminder_moved_out_of_quiet_hours_to_the_appointment_time_is_skipped():
    planned = _plan(_la(2025, 6, 16, 8, 0), _hours(2))
    assert planned == [PlannedReminder(timedelta(hours=2), None, SKIP_QUIET_HOURS)]


def test_evening_reminder_in_quiet_hours_moves_to_the_next_morning():
    planned = _plan(_la(2025, 6, 17, 10), _hours(12))  # nominally 22:00 the evening before
    assert _local_send_times(planned) == [_la(2025, 6, 17, 8)]


def test_quiet_hours_start_at_quiet_start_inclusive():
    planned = _plan(_la(2025, 6, 17, 10), _hours(14))  # nominally 20:00 exactly
    assert _local_send_times(planned) == [_la(2025, 6, 17, 8)]


def test_quiet_hours_end_at_quiet_end_exclusive():
    planned = _plan(_la(2025, 6, 17, 10), _hours(2))  # nominally 08:00 exactly
    assert _local_send_times(planned) == [_la(2025, 6, 17, 8)]
    assert planned[0].skip_reason is None


def test_evening_appointment_reminder_in_quiet_hours_is_skipped_until_after_it():
    planned = _plan(_la(2025, 6, 16, 21), [timedelta(minutes=30)])
    assert planned[0].skip_reason == SKIP_QUIET_HOURS


def test_custom_quiet_hours_are_honoured():
    planned = _plan(
        _la(2025, 6, 16, 12), _hours(2), quiet_start=time(21, 30), quiet_end=time(10, 30)
    )
    assert _local_send_times(planned) == [_la(2025, 6, 16, 10, 30)]


def test_quiet_hours_that_do_not_wrap_midnight_are_honoured():
    planned = _plan(_la(2025, 6, 16, 15), _hours(2), quiet_start=time(12), quiet_end=time(14))
    assert _local_send_times(planned) == [_la(2025, 6, 16, 14)]


def test_equal_quiet_start_and_end_mean_no_quiet_hours():
    planned = _plan(_la(2025, 6, 16, 5), _hours(2), quiet_start=time(8), quiet_end=time(8))
    assert _local_send_times(planned) == [_la(2025, 6, 16, 3)]


def test_quiet_hours_are_read_in_the_patients_time_zone():
    # 16:00 UTC is 09:00 in Los Angeles but 01:00 the next day in Tokyo.
    starts_at = datetime(2025, 6, 16, 18, 0, tzinfo=UTC)
    offsets = _hours(2)
    in_la = plan_reminders(starts_at=starts_at, now=LONG_AGO, offsets=offsets, time_zone=LA_NAME)
    in_tokyo = plan_reminders(
        starts_at=starts_at, now=LONG_AGO, offsets=offsets, time_zone="Asia/Tokyo"
    )
    assert in_la[0].send_at == datetime(2025, 6, 16, 16, 0, tzinfo=UTC)
    assert in_tokyo[0].skip_reason == SKIP_QUIET_HOURS


def test_reminders_pushed_to_the_same_time_are_sent_once_keeping_the_smallest_offset():
    planned = _plan(_la(2025, 6, 16, 9), _hours(3, 2))
    assert planned == [
        PlannedReminder(timedelta(hours=2), _la(2025, 6, 16, 8), None),
        PlannedReminder(timedelta(hours=3), None, SKIP_SAME_TIME),
    ]


def test_results_are_ordered_by_send_time_whatever_the_offsets_order():
    planned = _plan(_la(2025, 6, 16, 9), _hours(2, 72, 24))
    assert [reminder.offset for reminder in planned] == _hours(72, 24, 2)


def test_skipped_reminders_follow_the_ones_to_send_largest_offset_first():
    now = _la(2025, 6, 15, 12)
    planned = _plan(_la(2025, 6, 16, 9), _hours(2, 24, 72, 48), now=now)
    assert [(reminder.offset, reminder.skip_reason) for reminder in planned] == [
        (timedelta(hours=2), None),
        (timedelta(hours=72), SKIP_TOO_LATE),
        (timedelta(hours=48), SKIP_TOO_LATE),
        (timedelta(hours=24), SKIP_TOO_LATE),
    ]


def test_no_offsets_plan_nothing():
    assert _plan(_la(2025, 6, 16, 9), []) == []


def test_quiet_hours_end_of_a_late_evening_moment_is_the_next_morning():
    end = quiet_hours_end(
        _la(2025, 6, 13, 20, 5), time_zone=LA_NAME, quiet_start=time(20), quiet_end=time(8)
    )
    assert end == _la(2025, 6, 14, 8)
    assert end.tzinfo is UTC


def test_quiet_hours_end_of_an_early_morning_moment_is_that_morning():
    end = quiet_hours_end(
        _la(2025, 6, 14, 6, 30), time_zone=LA_NAME, quiet_start=time(20), quiet_end=time(8)
    )
    assert end == _la(2025, 6, 14, 8)


def test_quiet_hours_end_is_none_outside_quiet_hours():
    assert (
        quiet_hours_end(
            _la(2025, 6, 14, 8), time_zone=LA_NAME, quiet_start=time(20), quiet_end=time(8)
        )
        is None
    )


def test_quiet_hours_end_rejects_a_naive_moment():
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        quiet_hours_end(
            datetime(2025, 6, 14, 6), time_zone=LA_NAME, quiet_start=time(20), quiet_end=time(8)
        )


# Lateness.


def test_reminder_due_more_than_the_grace_ago_is_skipped_as_too_late():
    now = _la(2025, 6, 15, 9, 16)
    planned = _plan(_la(2025, 6, 16, 9), _hours(24), now=now)
    assert planned == [PlannedReminder(timedelta(hours=24), None, SKIP_TOO_LATE)]


def test_reminder_due_within_the_grace_keeps_its_past_send_time():
    now = _la(2025, 6, 15, 9, 15)
    planned = _plan(_la(2025, 6, 16, 9), _hours(24), now=now)
    assert planned == [PlannedReminder(timedelta(hours=24), _la(2025, 6, 15, 9), None)]


def test_default_grace_is_fifteen_minutes():
    assert timedelta(minutes=15) == DEFAULT_GRACE


def test_grace_can_be_changed():
    now = _la(2025, 6, 15, 9, 1)
    planned = _plan(_la(2025, 6, 16, 9), _hours(24), now=now, grace=timedelta(0))
    assert planned[0].skip_reason == SKIP_TOO_LATE


def test_lateness_is_judged_on_the_time_after_leaving_quiet_hours():
    # Nominally 07:00, which passed long ago; moved to 08:00, which is only 10 minutes ago.
    now = _la(2025, 6, 16, 8, 10)
    planned = _plan(_la(2025, 6, 16, 9), _hours(2), now=now)
    assert _local_send_times(planned) == [_la(2025, 6, 16, 8)]


def test_every_reminder_is_too_late_once_the_appointment_has_passed():
    planned = _plan(_la(2025, 6, 16, 9), _hours(24, 2), now=_la(2025, 6, 17))
    assert {reminder.skip_reason for reminder in planned} == {SKIP_TOO_LATE}


# DST weekends in America/Los_Angeles: 2025-03-09 02:00 -> 03:00, 2025-11-02 02:00 -> 01:00.


def test_spring_forward_weekend_keeps_whole_day_reminders_at_the_appointments_wall_time():
    planned = _plan(_la(2025, 3, 10, 9), _hours(72, 24, 2))
    assert _local_send_times(planned) == [
        _la(2025, 3, 7, 9),
        _la(2025, 3, 9, 9),
        _la(2025, 3, 10, 8),
    ]
    # Friday 09:00 is still standard time (UTC-8), Sunday 09:00 already daylight (UTC-7).
    assert [reminder.send_at.hour for reminder in planned] == [17, 16, 15]


def test_fall_back_weekend_keeps_whole_day_reminders_at_the_appointments_wall_time():
    planned = _plan(_la(2025, 11, 3, 9), _hours(72, 24, 2))
    assert _local_send_times(planned) == [
        _la(2025, 10, 31, 9),
        _la(2025, 11, 2, 9),
        _la(2025, 11, 3, 8),
    ]
    assert [reminder.send_at.hour for reminder in planned] == [16, 17, 16]


def test_hour_offsets_count_elapsed_time_across_a_dst_change():
    # 04:00 PDT on the spring-forward Sunday; three real hours earlier is 00:00 PST.
    starts_at = _la(2025, 3, 9, 4)
    planned = _plan(starts_at, _hours(3), quiet_start=time(0), quiet_end=time(0))
    assert planned[0].send_at == starts_at.astimezone(UTC) - timedelta(hours=3)
    assert planned[0].send_at.astimezone(LOS_ANGELES).replace(tzinfo=None) == datetime(2025, 3, 9)


def test_quiet_hours_end_on_the_spring_forward_morning_is_in_daylight_time():
    planned = _plan(_la(2025, 3, 9, 10), _hours(9))  # nominally 00:00 PST
    assert planned[0].send_at == datetime(2025, 3, 9, 15, 0, tzinfo=UTC)  # 08:00 PDT


def test_quiet_hours_end_on_the_fall_back_morning_is_in_standard_time():
    planned = _plan(_la(2025, 11, 2, 10), _hours(9))  # nominally 01:00 PDT
    assert planned[0].send_at == datetime(2025, 11, 2, 16, 0, tzinfo=UTC)  # 08:00 PST


def test_whole_day_offset_landing_in_the_spring_forward_gap_is_read_an_hour_later():
    planned = _plan(
        _la(2025, 3, 10, 2, 30), [timedelta(days=1)], quiet_start=time(0), quiet_end=time(0)
    )
    assert _local_send_times(planned) == [_la(2025, 3, 9, 3, 30)]


# Validation.


def test_naive_appointment_time_is_rejected():
    with pytest.raises(ValueError, match="starts_at must be timezone-aware"):
        plan_reminders(
            starts_at=datetime(2025, 6, 16, 9), now=LONG_AGO, offsets=[], time_zone=LA_NAME
        )


def test_naive_now_is_rejected():
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        plan_reminders(
            starts_at=_la(2025, 6, 16, 9), now=datetime(2025, 6, 1), offsets=[], time_zone=LA_NAME
        )


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone 'Pacific Time'"):
        plan_reminders(
            starts_at=_la(2025, 6, 16, 9), now=LONG_AGO, offsets=[], time_zone="Pacific Time"
        )


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=-2), 7200])
def test_offset_that_is_not_a_positive_timedelta_is_rejected(offset):
    with pytest.raises(ValueError, match="offsets must be positive timedeltas"):
        _plan(_la(2025, 6, 16, 9), [offset])


def test_repeated_offset_is_rejected():
    with pytest.raises(ValueError, match="offsets must not repeat"):
        _plan(_la(2025, 6, 16, 9), [timedelta(hours=24), timedelta(days=1)])


def test_negative_grace_is_rejected():
    with pytest.raises(ValueError, match="grace must be a timedelta of zero or more"):
        _plan(_la(2025, 6, 16, 9), _hours(2), grace=timedelta(minutes=-1))


def test_quiet_hours_given_as_strings_are_rejected():
    with pytest.raises(ValueError, match=r"quiet_start must be a naive datetime\.time"):
        _plan(_la(2025, 6, 16, 9), _hours(2), quiet_start="20:00")


_appointments = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2026, 12, 31),
    timezones=st.just(LOS_ANGELES),
    allow_imaginary=False,
)


@settings(max_examples=300, deadline=None)
@given(
    starts_at=_appointments,
    offsets=st.lists(st.integers(1, 14 * 24 * 60), max_size=5, unique=True),
    now_before=st.integers(-3 * 24 * 60, 20 * 24 * 60),
)
def test_every_planned_reminder_is_before_the_appointment_and_outside_quiet_hours(
    starts_at, offsets, now_before
):
    now = starts_at - timedelta(minutes=now_before)
    planned = _plan(starts_at, [timedelta(minutes=minutes) for minutes in offsets], now=now)
    assert sorted(reminder.offset for reminder in planned) == sorted(
        timedelta(minutes=minutes) for minutes in offsets
    )
    to_send = [reminder.send_at for reminder in planned if reminder.skip_reason is None]
    assert to_send == sorted(to_send)
    assert len(set(to_send)) == len(to_send)
    for send_at in to_send:
        local = send_at.astimezone(LOS_ANGELES).time()
        assert send_at < starts_at.astimezone(UTC)
        assert send_at >= now.astimezone(UTC) - DEFAULT_GRACE
        assert time(8) <= local < time(20)


# SMS segments.


def test_empty_text_is_zero_segments():
    assert sms_segments("") == 0


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm_text_is_160_septets_single_and_153_per_concatenated_segment(length, segments):
    assert sms_segments("a" * length) == segments


def test_gsm_alphabet_letters_beyond_ascii_stay_gsm():
    text = "Ñoño ¿qué? ¡Sì! £5 Ø Ä ß è à ù ì ò Ç Å @" * 4
    assert len(text) == 160
    assert sms_segments(text) == 1


def test_accented_letters_outside_the_gsm_alphabet_make_the_message_ucs2():
    assert sms_segments("Cita mañana a las 9, por favor confírmela respondiendo SÍ " * 2) == 2


def test_gsm_extension_characters_count_two_septets():
    assert sms_segments("€" * 80) == 1
    assert sms_segments("€" * 81) == 2
    assert sms_segments("{}[]~^|\\" * 10) == 1
    assert sms_segments("a" * 159 + "€") == 2


def test_gsm_escape_pair_is_not_split_across_segments():
    # 306 septets would fit two segments, but the euro sign cannot straddle them.
    assert sms_segments("a" * 152 + "€" + "a" * 152) == 3


@pytest.mark.parametrize(
    ("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_non_gsm_text_is_70_single_and_67_per_concatenated_segment(length, segments):
    assert sms_segments("ж" * length) == segments


def test_one_non_gsm_character_makes_the_whole_message_ucs2():
    assert sms_segments("a" * 69 + "ж") == 1
    assert sms_segments("a" * 70 + "ж") == 2
    assert sms_segments("Your appointment is tomorrow \u2014 reply C to confirm") == 1


def test_emoji_counts_as_two_utf16_code_units():
    assert sms_segments("😀" * 35) == 1
    assert sms_segments("😀" * 36) == 2


def test_surrogate_pair_is_not_split_across_segments():
    assert sms_segments("ж" * 66 + "😀" + "ж" * 66) == 3


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abc €{}", min_size=1, max_size=800))
def test_gsm_segment_count_stays_within_the_septet_bounds(text):
    septets = len(text) + sum(char in "€{}" for char in text)
    segments = sms_segments(text)
    if septets <= 160:
        assert segments == 1
    else:
        assert math.ceil(septets / 153) <= segments <= math.ceil(septets / 152)


# Templates.


def test_render_template_fills_plain_and_braced_placeholders():
    rendered = render_template(
        "Hi $first_name, see you ${date}th at $time.", {"first_name": "Ana", "date": 2, "time": "9"}
    )
    assert rendered == "Hi Ana, see you 2th at 9."


def test_render_template_ignores_extra_context():
    assert render_template("Hi $name", {"name": "Ana", "unused": "x"}) == "Hi Ana"


def test_render_template_names_every_unknown_placeholder():
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) in template: \$date, \$nmae"):
        render_template("Hi $nmae on ${date} at $time", {"time": "9:00"})


def test_double_dollar_renders_a_literal_dollar_sign():
    assert render_template("Copay: $$$amount", {"amount": "20"}) == "Copay: $20"


def test_stray_dollar_sign_is_rejected_with_its_position():
    with pytest.raises(ValueError, match=r"invalid placeholder at line 2, column 7: '\$20 copay'"):
        template_placeholders("Hello\nBring $20 copay")


def test_render_template_rejects_a_stray_dollar_sign():
    with pytest.raises(ValueError, match="write \\$\\$ for a literal dollar sign"):
        render_template("Bring $20", {})


def test_template_placeholders_lists_each_name_once():
    assert template_placeholders("$a ${b} $a $$c") == {"a", "b"}


def test_template_without_placeholders_has_none():
    assert template_placeholders("See you soon!") == set()


# Local dates and times.


def test_format_local_in_english():
    assert format_local(_la(2026, 3, 2, 9), time_zone=LA_NAME, language="en") == {
        "date": "Monday, March 2",
        "time": "9:00 AM",
    }


def test_format_local_in_spanish():
    assert format_local(_la(2026, 3, 2, 9), time_zone=LA_NAME, language="es") == {
        "date": "lunes 2 de marzo",
        "time": "9:00",
    }


def test_format_local_afternoon_is_pm_in_english_and_24_hour_in_spanish():
    moment = _la(2026, 8, 15, 14, 5)
    assert format_local(moment, time_zone=LA_NAME, language="en")["time"] == "2:05 PM"
    assert format_local(moment, time_zone=LA_NAME, language="es") == {
        "date": "sábado 15 de agosto",
        "time": "14:05",
    }


def test_format_local_noon_and_midnight_in_english():
    assert format_local(_la(2026, 3, 2, 12), time_zone=LA_NAME, language="en")["time"] == (
        "12:00 PM"
    )
    assert format_local(_la(2026, 3, 2, 0), time_zone=LA_NAME, language="en")["time"] == (
        "12:00 AM"
    )
    assert format_local(_la(2026, 3, 2, 0), time_zone=LA_NAME, language="es")["time"] == "0:00"


def test_format_local_converts_to_the_patients_time_zone():
    moment = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # still Monday evening in Los Angeles
    assert format_local(moment, time_zone=LA_NAME, language="en") == {
        "date": "Monday, March 2",
        "time": "6:30 PM",
    }


@pytest.mark.parametrize("language", ["es-MX", "ES_us", "es"])
def test_format_local_accepts_regional_spanish_tags(language):
    assert format_local(_la(2026, 3, 2, 9), time_zone=LA_NAME, language=language)["date"] == (
        "lunes 2 de marzo"
    )


@pytest.mark.parametrize("language", ["fr", "", "pt-BR"])
def test_format_local_falls_back_to_english_for_other_languages(language):
    assert format_local(_la(2026, 3, 2, 9), time_zone=LA_NAME, language=language)["date"] == (
        "Monday, March 2"
    )


def test_format_local_rejects_a_naive_datetime():
    with pytest.raises(ValueError, match="dt must be timezone-aware"):
        format_local(datetime(2026, 3, 2, 9), time_zone=LA_NAME, language="en")
