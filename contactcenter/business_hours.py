"""Business hours of a practice, and time arithmetic that only counts while it is open.

SLA targets ("answer within 30 minutes") count business time only: a message that
arrives at 16:50 on a Friday with a 30-minute target is due at 09:20 on Monday.

Hours are wall-clock times in the calendar's time zone and follow its DST changes: 9:00 is
9:00 local both sides of a change. On the day of a change, a wall time that does not exist
(02:30 when clocks jump from 02:00 to 03:00) is read with the offset in force before the
change, so it lands an hour later (03:30), as zoneinfo reads it; a wall time that
happens twice (01:30 when clocks fall back) means its first occurrence. An interval that
ends at 00:00 runs to midnight at the end of its day.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY = timedelta(days=1)
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone `name`; a ValueError that says what is expected otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone must be an IANA name such as 'America/New_York': {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name)") from error


def require_aware(value: datetime, name: str) -> datetime:
    """`value` in UTC; a ValueError naming `name` when it is not an aware datetime."""
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware: {value.isoformat()}")
    return value.astimezone(UTC)


def _since_midnight(value: time) -> timedelta:
    return timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


def _interval_label(start: time, end: time) -> str:
    return f"{start.isoformat('minutes')}-{end.isoformat('minutes')}"


def _validate_day(weekday: object, intervals: object) -> tuple[tuple[timedelta, timedelta], ...]:
    if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
        raise ValueError(
            f"weekly_hours keys must be weekdays 0 (Monday) to 6 (Sunday): {weekday!r}"
        )
    day = _WEEKDAY_NAMES[weekday]
    if isinstance(intervals, str) or not isinstance(intervals, Sequence):
        raise ValueError(f"{day}: hours must be a list of (start, end) pairs")
    offsets: list[tuple[timedelta, timedelta]] = []
    previous_label = ""
    for position, interval in enumerate(intervals, start=1):
        if not isinstance(interval, Sequence) or len(interval) != 2:
            raise ValueError(f"{day}: interval {position} must be a (start, end) pair")
        start, end = interval
        if not all(isinstance(value, time) for value in (start, end)):
            raise ValueError(f"{day}: interval {position} must hold two datetime.time values")
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError(
                f"{day}: interval {position} must use naive times; the calendar's time zone applies"
            )
        opens = _since_midnight(start)
        # time() cannot say 24:00, so 00:00 as an end means midnight at the end of the day.
        closes = _DAY if end == time(0) else _since_midnight(end)
        label = _interval_label(start, end)
        if opens >= closes:
            raise ValueError(f"{day}: interval {position} ({label}) must start before it ends")
        if offsets and opens < offsets[-1][1]:
            raise ValueError(
                f"{day}: interval {position} ({label}) must start at or after the end of "
                f"interval {position - 1} ({previous_label}); list intervals in order, "
                "without overlap"
            )
        offsets.append((opens, closes))
        previous_label = label
    return tuple(offsets)


class BusinessCalendar:
    """Opening hours per weekday (0 = Monday) in one time zone, minus holidays.

    weekly_hours maps a weekday to its intervals, e.g. {0: [(time(9), time(12)),
    (time(13), time(17))]} for a lunch break; a weekday that is missing is closed.
    Intervals must be in order, must not overlap (touching is fine), and each must start
    before it ends. Raises ValueError on any bad value.
    """

    __slots__ = ("_day_periods_cache", "_holidays", "_time_zone", "_weekly", "_zone")

    def __init__(
        self,
        *,
        time_zone: str,
        weekly_hours: Mapping[int, Sequence[tuple[time, time]]],
        holidays: Iterable[date] = frozenset(),
    ):
        self._zone = zone_named(time_zone)
        self._time_zone = time_zone
        if not isinstance(weekly_hours, Mapping):
            raise ValueError("weekly_hours must map weekdays (0 = Monday) to lists of intervals")
        weekly: list[tuple[tuple[timedelta, timedelta], ...]] = [()] * 7
        for weekday, intervals in weekly_hours.items():
            weekly[weekday] = _validate_day(weekday, intervals)
        self._weekly = tuple(weekly)
        holiday_set = frozenset(holidays)
        for holiday in holiday_set:
            # datetime is a subclass of date, and a datetime never equals a date in a
            # lookup, so it would silently be no holiday at all.
            if not isinstance(holiday, date) or isinstance(holiday, datetime):
                raise ValueError(f"holidays must be datetime.date values: {holiday!r}")
        self._holidays = holiday_set
        # The UTC periods of each local day, worked out once per calendar: a KPI
        # report measures thousands of durations over the same few days, and the
        # time zone conversions were most of its Python time.
        self._day_periods_cache: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    @property
    def time_zone(self) -> str:
        return self._time_zone

    @property
    def holidays(self) -> frozenset[date]:
        return self._holidays

    @property
    def has_hours(self) -> bool:
        """False for a calendar that is never open, whatever the date."""
        return any(self._weekly)

    def _to_utc(self, day: date, since_midnight: timedelta) -> datetime:
        wall = datetime.combine(day, time(0)) + since_midnight
        return wall.replace(tzinfo=self._zone).astimezone(UTC)

    def _periods(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open periods as UTC (opens, closes), in order, from the first one that closes
        after since; endless, so only call it on a calendar that has hours."""
        # A day early: a period of the previous local day can still be running at since
        # when its closing wall time was read across a DST change at midnight.
        day = since.astimezone(self._zone).date() - _DAY
        previous_close: datetime | None = None
        while True:
            for opens, closes in self._day_periods(day):
                # Reading gap wall times an hour late can make a period start before
                # the previous one ends, or even end before it starts.
                if previous_close is not None:
                    opens = max(opens, previous_close)
                if closes <= opens:
                    continue
                previous_close = closes
                if closes > since:
                    yield opens, closes
            day += _DAY

    def _day_periods(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The local day's open periods as UTC (opens, closes), as the wall times
        read; _periods() fixes up the overlaps a DST change can make."""
        periods = self._day_periods_cache.get(day)
        if periods is None:
            periods = (
                ()
                if day in self._holidays
                else tuple(
                    (self._to_utc(day, opens_after), self._to_utc(day, closes_after))
                    for opens_after, closes_after in self._weekly[day.weekday()]
                )
            )
            self._day_periods_cache[day] = periods
        return periods

    def is_open(self, at: datetime) -> bool:
        """Whether the practice is open at the aware datetime at."""
        at = require_aware(at, "at")
        if not self.has_hours:
            return False
        opens, _closes = next(self._periods(at))
        return opens <= at

    def add_business_time(self, start: datetime, delta: timedelta) -> datetime:
        """The aware UTC instant when delta of business time has passed since start.

        A start outside business hours counts from the next opening, so a zero delta
        gives the next opening (or start itself if open). A delta that runs out exactly
        at a closing gives the closing time, not the next opening.
        """
        start = require_aware(start, "start")
        if not isinstance(delta, timedelta) or delta < timedelta(0):
            raise ValueError(f"delta must be a timedelta of zero or more: {delta!r}")
        if not self.has_hours:
            raise ValueError("the calendar has no business hours on any weekday")
        remaining = delta
        periods = self._periods(start)
        while True:
            opens, closes = next(periods)
            opens = max(opens, start)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Business time from start to end; zero if end is not after start."""
        start = require_aware(start, "start")
        end = require_aware(end, "end")
        total = timedelta(0)
        if end <= start or not self.has_hours:
            return total
        for opens, closes in self._periods(start):
            if opens >= end:
                break
            total += min(closes, end) - max(opens, start)
        return total


def calendar_from_config(config):
    """A calendar from its stored JSON form:
    {"time_zone": "America/New_York", "weekly": {"0": [["09:00", "17:00"]], ...},
     "holidays": ["2026-12-25"]}. Raises ValueError with a clear message."""
    if not isinstance(config, Mapping):
        raise ValueError("Business hours must be an object.")
    try:
        weekly = {
            int(day): [(time.fromisoformat(start), time.fromisoformat(end)) for start, end in spans]
            for day, spans in (config.get("weekly") or {}).items()
        }
        holidays = {date.fromisoformat(day) for day in config.get("holidays") or ()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Business hours are malformed: {exc}") from exc
    return BusinessCalendar(
        time_zone=config.get("time_zone") or "UTC", weekly_hours=weekly, holidays=holidays
    )
