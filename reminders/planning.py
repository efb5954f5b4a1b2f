"""Pure calculations behind appointment reminders: when each one goes out, how many SMS
segments it costs, and how its text is filled in and dates are written for the patient.

No database here, so the rules can be tested exhaustively; the reminders app stores
and sends what these functions decide. Dates are written through Django's i18n.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import translation
from django.utils.formats import date_format

from contactcenter.business_hours import require_aware, zone_named

SKIP_QUIET_HOURS = "quiet_hours_until_appointment"
SKIP_TOO_LATE = "too_late"
SKIP_SAME_TIME = "same_send_time_as_closer_reminder"

DEFAULT_GRACE = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One reminder of an appointment: when to send it (aware UTC), or why it is skipped."""

    offset: timedelta
    send_at: datetime | None
    skip_reason: str | None


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: a wall time skipped by a DST change is read with the offset before it
    # (02:30 becomes 03:30), and one that happens twice means its first occurrence.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _nominal_send_time(starts_at: datetime, offset: timedelta, zone: ZoneInfo) -> datetime:
    # Whole days go back on the patient's calendar, so the 72-hour reminder of a Monday
    # 09:00 appointment goes out on Friday at 09:00 even when the clocks change over the
    # weekend; the rest of the offset is elapsed time ("2 hours before").
    local_wall = starts_at.astimezone(zone).replace(tzinfo=None)
    days_before = timedelta(days=offset.days)
    return _wall_to_utc(local_wall - days_before, zone) - (offset - days_before)


def _quiet_hours_end(
    moment: datetime, *, zone: ZoneInfo, quiet_start: time, quiet_end: time
) -> datetime | None:
    """When the quiet period that moment falls in ends (aware UTC), or None if it is not
    in one. A quiet period from quiet_start to quiet_end wraps midnight when it starts
    later in the day than it ends."""
    local = moment.astimezone(zone)
    wall_time = local.time()
    day = local.date()
    if quiet_start < quiet_end:
        in_quiet = quiet_start <= wall_time < quiet_end
    elif quiet_start > quiet_end:
        in_quiet = wall_time >= quiet_start or wall_time < quiet_end
        if wall_time >= quiet_start:
            day += timedelta(days=1)
    else:
        in_quiet = False
    if not in_quiet:
        return None
    return _wall_to_utc(datetime.combine(day, quiet_end), zone)


def quiet_hours_end(
    moment: datetime, *, time_zone: str, quiet_start: time, quiet_end: time
) -> datetime | None:
    """When the quiet hours that moment falls in end (aware UTC) in time_zone, or None
    if moment is outside them. The dispatcher asks this at send time: a reminder
    planned for 19:55 that a late worker reaches at 20:05 waits for the morning."""
    return _quiet_hours_end(
        require_aware(moment, "moment"),
        zone=zone_named(time_zone),
        quiet_start=quiet_start,
        quiet_end=quiet_end,
    )


def plan_reminders(
    *,
    starts_at: datetime,
    now: datetime,
    offsets: Sequence[timedelta],
    time_zone: str,
    quiet_start: time = time(20, 0),
    quiet_end: time = time(8, 0),
    grace: timedelta = DEFAULT_GRACE,
) -> list[PlannedReminder]:
    """One PlannedReminder per offset before the appointment at starts_at.

    A reminder is due offset before starts_at (whole days counted on the patient's
    calendar in time_zone). If that falls in quiet hours (from quiet_start to quiet_end,
    local wall times; equal times mean no quiet hours) it moves to the end of the quiet
    period, and is skipped (SKIP_QUIET_HOURS) if that is not before the appointment.
    A send time more than grace before now is skipped (SKIP_TOO_LATE); one less late is
    kept as it is, in the past, for the dispatcher to send at once. When several
    reminders land on the same instant (quiet hours pushed them together) only the one
    with the smallest offset is sent, the others are skipped (SKIP_SAME_TIME): patients
    get one message, not two identical ones.

    Reminders to send come first, by send time; skipped ones follow, largest offset first.
    """
    starts_at = require_aware(starts_at, "starts_at")
    now = require_aware(now, "now")
    zone = zone_named(time_zone)
    for name, value in (("quiet_start", quiet_start), ("quiet_end", quiet_end)):
        if not isinstance(value, time) or value.tzinfo is not None:
            raise ValueError(f"{name} must be a naive datetime.time (local wall time)")
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise ValueError(f"grace must be a timedelta of zero or more: {grace!r}")
    for offset in offsets:
        if not isinstance(offset, timedelta) or offset <= timedelta(0):
            raise ValueError(f"offsets must be positive timedeltas: {offset!r}")
    if len(set(offsets)) != len(offsets):
        raise ValueError("offsets must not repeat")

    planned: list[PlannedReminder] = []
    taken: set[datetime] = set()
    for offset in sorted(offsets):
        send_at = _nominal_send_time(starts_at, offset, zone)
        moved = _quiet_hours_end(send_at, zone=zone, quiet_start=quiet_start, quiet_end=quiet_end)
        if moved is not None:
            send_at = moved
        if moved is not None and send_at >= starts_at:
            reason = SKIP_QUIET_HOURS
        elif send_at < now - grace:
            reason = SKIP_TOO_LATE
        elif send_at in taken:
            reason = SKIP_SAME_TIME
        else:
            reason = None
            taken.add(send_at)
        planned.append(
            PlannedReminder(offset=offset, send_at=None if reason else send_at, skip_reason=reason)
        )
    return sorted(
        planned,
        key=lambda reminder: (
            reminder.send_at is None,
            reminder.send_at or starts_at,
            -reminder.offset,
        ),
    )


# GSM 03.38: the basic alphabet costs one septet a character; the extension table is
# reached through an escape, two septets.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


def _count_segments(units: list[int], *, single: int, per_segment: int) -> int:
    if sum(units) <= single:
        return 1
    # Phones do not split an escape pair or a surrogate pair across two segments, so a
    # segment can end one unit short.
    segments, used = 1, 0
    for size in units:
        if used + size > per_segment:
            segments += 1
            used = 0
        used += size
    return segments


def sms_segments(text: str) -> int:
    """How many SMS segments text is sent as; 0 for empty text.

    GSM-7 when every character is in the GSM alphabet (extension characters such as
    "€" or "{" count twice): 160 septets in one segment, 153 per segment when
    concatenated. Any other character makes the whole message UCS-2: 70 UTF-16 code
    units in one segment, 67 per segment, with an emoji counting as two.
    """
    if not text:
        return 0
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        septets = [2 if char in _GSM_EXTENSION else 1 for char in text]
        return _count_segments(septets, single=160, per_segment=153)
    code_units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return _count_segments(code_units, single=70, per_segment=67)


# How a reminder writes the appointment's date and time, in Django's date format
# characters (`l` weekday, `F` month, `j` day, `g`/`G` hour, `i` minutes, `A`
# AM/PM). A language's catalog (locale/<language>/LC_MESSAGES/django.po)
# translates these formats; Django's own catalogs translate the names.
DATE_FORMAT = "l, F j"
TIME_FORMAT = "g:i A"
_DATE_CONTEXT = "reminder date"
_TIME_CONTEXT = "reminder time"
_LANGUAGE_TAG = re.compile(r"[-_]")


def _language(tag: str) -> str:
    """The primary language of `tag` when our catalogs write reminder dates in it
    (English and the languages of locale/), else English: a date half in the
    patient's language and half in English would be worse than English."""
    primary = _LANGUAGE_TAG.split(tag or "", maxsplit=1)[0].lower()
    if not primary or primary == "en":
        return "en"
    with translation.override(primary):
        translated = translation.pgettext(_DATE_CONTEXT, DATE_FORMAT) != DATE_FORMAT
    return primary if translated else "en"


def format_local(dt: datetime, *, time_zone: str, language: str) -> dict[str, str]:
    """{"date": ..., "time": ...} for dt as the patient reads it in time_zone.

    English: "Monday, March 2" and "9:00 AM"; Spanish ("es", "es-MX", ...): "lunes 2 de
    marzo" and "9:00" (24-hour). Any other language gets English. Through Django's
    i18n (names from its catalogs, formats from ours), not the system locale, which
    servers rarely have installed.
    """
    local = require_aware(dt, "dt").astimezone(zone_named(time_zone))
    with translation.override(_language(language)):
        return {
            "date": date_format(local, translation.pgettext(_DATE_CONTEXT, DATE_FORMAT)),
            "time": date_format(local, translation.pgettext(_TIME_CONTEXT, TIME_FORMAT)),
        }
