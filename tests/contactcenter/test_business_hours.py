from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactcenter.business_hours import BusinessCalendar

NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = [(time(9), time(17))]
WEEKDAYS_NINE_TO_FIVE = dict.fromkeys(range(5), NINE_TO_FIVE)


def _ny(year, month, day, hour=0, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def _office(*, holidays=frozenset(), weekly_hours=None):
    return BusinessCalendar(
        time_zone="America/New_York",
        weekly_hours=WEEKDAYS_NINE_TO_FIVE if weekly_hours is None else weekly_hours,
        holidays=holidays,
    )


# The acceptance examples: 16:50 local, 30-minute target, 9:00-17:00 Monday to Friday.


def test_friday_late_message_with_30_minute_target_is_due_monday_0920():
    due = _office().add_business_time(_ny(2025, 1, 10, 16, 50), timedelta(minutes=30))
    assert due == _ny(2025, 1, 13, 9, 20)


def test_thursday_late_message_with_30_minute_target_is_due_friday_0920():
    due = _office().add_business_time(_ny(2025, 1, 9, 16, 50), timedelta(minutes=30))
    assert due == _ny(2025, 1, 10, 9, 20)


def test_friday_late_message_before_a_monday_holiday_is_due_tuesday_0920():
    calendar = _office(holidays={date(2025, 1, 20)})
    due = calendar.add_business_time(_ny(2025, 1, 17, 16, 50), timedelta(minutes=30))
    assert due == _ny(2025, 1, 21, 9, 20)


def test_add_business_time_returns_an_aware_utc_datetime():
    due = _office().add_business_time(_ny(2025, 1, 9, 16, 50), timedelta(minutes=30))
    assert due.tzinfo is UTC
    assert due == datetime(2025, 1, 10, 14, 20, tzinfo=UTC)


def test_add_business_time_accepts_a_start_in_any_time_zone():
    start = datetime(2025, 1, 9, 21, 50, tzinfo=UTC)  # 16:50 in New York
    assert _office().add_business_time(start, timedelta(minutes=30)) == _ny(2025, 1, 10, 9, 20)


def test_start_before_opening_rolls_to_the_opening():
    due = _office().add_business_time(_ny(2025, 1, 9, 6, 0), timedelta(hours=1))
    assert due == _ny(2025, 1, 9, 10, 0)


def test_start_on_a_weekend_rolls_to_monday_opening():
    due = _office().add_business_time(_ny(2025, 1, 11, 12, 0), timedelta(minutes=5))
    assert due == _ny(2025, 1, 13, 9, 5)


def test_zero_delta_while_open_is_the_start_itself():
    start = _ny(2025, 1, 9, 11, 0)
    assert _office().add_business_time(start, timedelta(0)) == start


def test_zero_delta_while_closed_is_the_next_opening():
    assert _office().add_business_time(_ny(2025, 1, 9, 18), timedelta(0)) == _ny(2025, 1, 10, 9)


def test_delta_ending_exactly_at_closing_gives_the_closing_time():
    due = _office().add_business_time(_ny(2025, 1, 9, 16, 30), timedelta(minutes=30))
    assert due == _ny(2025, 1, 9, 17, 0)


def test_delta_longer_than_a_day_spans_several_business_days():
    due = _office().add_business_time(_ny(2025, 1, 9, 9), timedelta(hours=20))
    assert due == _ny(2025, 1, 13, 13)  # Thu 8h, Fri 8h, Mon 4h


def test_lunch_break_is_not_counted():
    split_day = [(time(9), time(12)), (time(13), time(17))]
    calendar = _office(weekly_hours=dict.fromkeys(range(5), split_day))
    assert calendar.add_business_time(_ny(2025, 1, 9, 11, 30), timedelta(hours=1)) == _ny(
        2025, 1, 9, 13, 30
    )
    assert not calendar.is_open(_ny(2025, 1, 9, 12, 30))


def test_touching_intervals_count_as_continuous_time():
    calendar = _office(weekly_hours={0: [(time(9), time(12)), (time(12), time(17))]})
    assert calendar.business_time_between(_ny(2025, 1, 13, 8), _ny(2025, 1, 13, 18)) == timedelta(
        hours=8
    )
    assert calendar.is_open(_ny(2025, 1, 13, 12))


def test_interval_ending_at_0000_runs_to_midnight():
    calendar = _office(weekly_hours={0: [(time(22), time(0))]})
    assert calendar.is_open(_ny(2025, 1, 13, 23, 59))
    assert not calendar.is_open(_ny(2025, 1, 14, 0, 0))
    assert calendar.business_time_between(_ny(2025, 1, 13), _ny(2025, 1, 15)) == timedelta(hours=2)


def test_business_time_between_counts_open_time_only():
    between = _office().business_time_between(_ny(2025, 1, 10, 16, 50), _ny(2025, 1, 13, 9, 20))
    assert between == timedelta(minutes=30)


def test_business_time_between_skips_holidays():
    calendar = _office(holidays={date(2025, 1, 20)})
    between = calendar.business_time_between(_ny(2025, 1, 17, 9), _ny(2025, 1, 22, 9))
    assert between == timedelta(hours=16)  # Friday and Tuesday


def test_business_time_between_is_zero_when_end_is_not_after_start():
    calendar = _office()
    assert calendar.business_time_between(_ny(2025, 1, 9, 12), _ny(2025, 1, 9, 12)) == timedelta(0)
    assert calendar.business_time_between(_ny(2025, 1, 9, 12), _ny(2025, 1, 9, 10)) == timedelta(0)


def test_is_open_includes_opening_and_excludes_closing():
    calendar = _office()
    assert calendar.is_open(_ny(2025, 1, 9, 9, 0))
    assert calendar.is_open(_ny(2025, 1, 9, 16, 59))
    assert not calendar.is_open(_ny(2025, 1, 9, 17, 0))
    assert not calendar.is_open(_ny(2025, 1, 9, 8, 59))


def test_is_open_is_false_on_weekends_and_holidays():
    calendar = _office(holidays={date(2025, 1, 20)})
    assert not calendar.is_open(_ny(2025, 1, 18, 12))
    assert not calendar.is_open(_ny(2025, 1, 20, 12))
    assert calendar.is_open(_ny(2025, 1, 21, 12))


def test_holiday_is_a_date_in_the_calendars_time_zone():
    calendar = _office(holidays={date(2025, 1, 20)})
    # 00:30 UTC on the 21st is still the evening of the 20th in New York.
    assert calendar.business_time_between(
        datetime(2025, 1, 20, 14, tzinfo=UTC), datetime(2025, 1, 21, 0, 30, tzinfo=UTC)
    ) == timedelta(0)


# DST in America/New_York: 2025-03-09 02:00 -> 03:00, 2025-11-02 02:00 -> 01:00 (Sundays).


def test_friday_before_spring_forward_is_due_monday_0920_local_in_daylight_time():
    due = _office().add_business_time(_ny(2025, 3, 7, 16, 50), timedelta(minutes=30))
    assert due == _ny(2025, 3, 10, 9, 20)
    assert due == datetime(2025, 3, 10, 13, 20, tzinfo=UTC)


def test_friday_before_fall_back_is_due_monday_0920_local_in_standard_time():
    due = _office().add_business_time(_ny(2025, 10, 31, 16, 50), timedelta(minutes=30))
    assert due == _ny(2025, 11, 3, 9, 20)
    assert due == datetime(2025, 11, 3, 14, 20, tzinfo=UTC)


def test_spring_forward_sunday_night_shift_is_one_hour_shorter():
    calendar = _office(weekly_hours={6: [(time(0), time(6))]})
    between = calendar.business_time_between(_ny(2025, 3, 8, 12), _ny(2025, 3, 10, 12))
    assert between == timedelta(hours=5)


def test_fall_back_sunday_night_shift_is_one_hour_longer():
    calendar = _office(weekly_hours={6: [(time(0), time(6))]})
    between = calendar.business_time_between(_ny(2025, 11, 1, 12), _ny(2025, 11, 3, 12))
    assert between == timedelta(hours=7)


def test_adding_across_spring_forward_counts_real_elapsed_time():
    calendar = _office(weekly_hours={6: [(time(0), time(6))]})
    due = calendar.add_business_time(_ny(2025, 3, 9, 1, 0), timedelta(hours=2))
    # 01:00 EST plus two real hours is 04:00 EDT: the 02:00-03:00 wall hour never happens.
    assert due == _ny(2025, 3, 9, 4, 0)


def test_adding_across_fall_back_counts_the_repeated_hour():
    calendar = _office(weekly_hours={6: [(time(0), time(6))]})
    due = calendar.add_business_time(_ny(2025, 11, 2, 0, 30), timedelta(hours=2))
    # 00:30 EDT plus two real hours is the second 01:30 (EST).
    assert due == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    assert due.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2025, 11, 2, 1, 30)


def test_day_hours_on_dst_sundays_are_still_eight_wall_clock_hours():
    calendar = _office(weekly_hours={6: NINE_TO_FIVE})
    for sunday in (date(2025, 3, 9), date(2025, 11, 2)):
        start = datetime.combine(sunday, time(0), tzinfo=NEW_YORK)
        between = calendar.business_time_between(start, start + timedelta(days=1))
        assert between == timedelta(hours=8)
        assert calendar.is_open(datetime.combine(sunday, time(9), tzinfo=NEW_YORK))


def test_opening_time_that_does_not_exist_on_spring_forward_day_opens_an_hour_later():
    calendar = _office(weekly_hours={6: [(time(2, 30), time(5))]})
    due = calendar.add_business_time(_ny(2025, 3, 9, 0, 0), timedelta(0))
    assert due == _ny(2025, 3, 9, 3, 30)


def test_is_open_during_the_repeated_fall_back_hour():
    calendar = _office(weekly_hours={6: [(time(0), time(6))]})
    second_0130 = datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    assert calendar.is_open(second_0130)


# Validation.


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        BusinessCalendar(time_zone="Mars/Olympus", weekly_hours={})


def test_malformed_time_zone_name_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar(time_zone="../etc/passwd", weekly_hours={})


def test_interval_that_ends_before_it_starts_is_rejected():
    with pytest.raises(ValueError, match=r"Monday: interval 1 \(17:00-09:00\) must start before"):
        BusinessCalendar(time_zone="UTC", weekly_hours={0: [(time(17), time(9))]})


def test_empty_interval_is_rejected():
    with pytest.raises(ValueError, match="must start before it ends"):
        BusinessCalendar(time_zone="UTC", weekly_hours={0: [(time(9), time(9))]})


def test_overlapping_intervals_are_rejected():
    with pytest.raises(ValueError, match=r"Tuesday: interval 2 \(11:00-13:00\) must start at or"):
        BusinessCalendar(
            time_zone="UTC", weekly_hours={1: [(time(9), time(12)), (time(11), time(13))]}
        )


def test_intervals_out_of_order_are_rejected():
    with pytest.raises(ValueError, match="list intervals in order"):
        BusinessCalendar(
            time_zone="UTC", weekly_hours={2: [(time(13), time(17)), (time(9), time(12))]}
        )


@pytest.mark.parametrize("weekday", [7, -1, "0", True])
def test_weekday_outside_monday_to_sunday_is_rejected(weekday):
    with pytest.raises(ValueError, match="weekdays 0 \\(Monday\\) to 6 \\(Sunday\\)"):
        BusinessCalendar(time_zone="UTC", weekly_hours={weekday: NINE_TO_FIVE})


def test_interval_that_is_not_a_pair_of_times_is_rejected():
    with pytest.raises(ValueError, match=r"must hold two datetime\.time values"):
        BusinessCalendar(time_zone="UTC", weekly_hours={0: [("09:00", "17:00")]})


def test_interval_with_aware_times_is_rejected():
    with pytest.raises(ValueError, match="naive times"):
        BusinessCalendar(
            time_zone="UTC", weekly_hours={0: [(time(9, tzinfo=UTC), time(17, tzinfo=UTC))]}
        )


def test_datetime_given_as_holiday_is_rejected():
    with pytest.raises(ValueError, match=r"holidays must be datetime\.date values"):
        BusinessCalendar(
            time_zone="UTC", weekly_hours={}, holidays={datetime(2025, 1, 1, tzinfo=UTC)}
        )


def test_naive_start_is_rejected():
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        _office().add_business_time(datetime(2025, 1, 9, 12), timedelta(minutes=5))


def test_negative_delta_is_rejected():
    with pytest.raises(ValueError, match="delta must be a timedelta of zero or more"):
        _office().add_business_time(_ny(2025, 1, 9, 12), timedelta(minutes=-5))


def test_calendar_without_hours_raises_instead_of_looping_forever():
    calendar = BusinessCalendar(time_zone="UTC", weekly_hours={0: [], 3: []})
    assert not calendar.has_hours
    with pytest.raises(ValueError, match="no business hours"):
        calendar.add_business_time(_ny(2025, 1, 9, 12), timedelta(minutes=5))


def test_calendar_without_hours_is_never_open_and_counts_no_time():
    calendar = BusinessCalendar(time_zone="UTC", weekly_hours={})
    assert not calendar.is_open(_ny(2025, 1, 9, 12))
    assert calendar.business_time_between(_ny(2025, 1, 1), _ny(2026, 1, 1)) == timedelta(0)


def test_calendar_exposes_its_time_zone_and_holidays():
    calendar = _office(holidays=[date(2025, 1, 20)])
    assert calendar.time_zone == "America/New_York"
    assert calendar.holidays == frozenset({date(2025, 1, 20)})


# Properties, over calendars with lunch breaks, holidays, odd DST rules (Lord Howe moves
# its clocks by 30 minutes) and hours that span DST changes.

_CALENDARS = [
    _office(
        weekly_hours={
            **dict.fromkeys(range(5), ((time(8), time(12)), (time(13), time(17, 30)))),
            6: [(time(0), time(6))],
        },
        holidays={date(2025, 1, 20), date(2025, 7, 4), date(2025, 12, 25)},
    ),
    BusinessCalendar(
        time_zone="Australia/Lord_Howe",
        weekly_hours={0: [(time(1), time(3))], 6: [(time(1, 30), time(2, 45))]},
    ),
    BusinessCalendar(time_zone="Europe/London", weekly_hours={5: [(time(0), time(0))]}),
    BusinessCalendar(
        time_zone="Asia/Kolkata", weekly_hours=dict.fromkeys(range(7), ((time(0), time(0)),))
    ),
]
_ZONES = [UTC, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Europe/London")]
_instants = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2026, 12, 31),
    timezones=st.sampled_from(_ZONES),
    allow_imaginary=False,
)
_calendars = st.sampled_from(_CALENDARS)


@settings(max_examples=300, deadline=None)
@given(calendar=_calendars, start=_instants, minutes=st.integers(0, 20_000))
def test_business_time_between_inverts_add_business_time(calendar, start, minutes):
    delta = timedelta(minutes=minutes)
    assert calendar.business_time_between(start, calendar.add_business_time(start, delta)) == delta


@settings(max_examples=200, deadline=None)
@given(calendar=_calendars, start=_instants, minutes=st.integers(1, 20_000))
def test_add_business_time_ends_at_an_open_moment_or_a_closing(calendar, start, minutes):
    due = calendar.add_business_time(start, timedelta(minutes=minutes))
    assert due > start
    assert calendar.is_open(due - timedelta(microseconds=1))


@settings(max_examples=200, deadline=None)
@given(
    calendar=_calendars, start=_instants, first=st.integers(0, 5_000), more=st.integers(0, 5_000)
)
def test_add_business_time_is_monotonic_and_composes(calendar, start, first, more):
    after_first = calendar.add_business_time(start, timedelta(minutes=first))
    total = calendar.add_business_time(start, timedelta(minutes=first + more))
    assert after_first <= total
    if more:
        assert calendar.add_business_time(after_first, timedelta(minutes=more)) == total


@settings(max_examples=200, deadline=None)
@given(calendar=_calendars, instants=st.lists(_instants, min_size=3, max_size=3))
def test_business_time_between_is_additive_and_bounded_by_elapsed_time(calendar, instants):
    # In UTC: Python compares and subtracts datetimes that share a tzinfo by wall clock.
    first, middle, last = sorted(instant.astimezone(UTC) for instant in instants)
    whole = calendar.business_time_between(first, last)
    assert whole == calendar.business_time_between(first, middle) + calendar.business_time_between(
        middle, last
    )
    assert timedelta(0) <= whole <= last - first
