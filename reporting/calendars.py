"""Business hours for the response-time KPIs.

A team's calendar is escalation.BusinessHours, the same calendar its SLA clocks
run on. Reporting sits above escalation in the layers, but it reads the model
through the app registry instead of importing it, so reporting keeps working
(around the clock) on an installation, or a migration state, without it. A team
without a row, or with a row that does not parse or never opens, counts around
the clock: a broken calendar must not make every duration zero.
"""

import structlog
from django.apps import apps
from django.db import DatabaseError, transaction

logger = structlog.stdlib.get_logger(__name__)


def team_calendars(*, team_ids):
    """{team id: BusinessCalendar} for the teams that have business hours."""
    try:
        model = apps.get_model("escalation", "BusinessHours")
    except LookupError:
        return {}
    try:
        # A savepoint, so a missing table (escalation not migrated yet) does not
        # break the caller's transaction.
        with transaction.atomic():
            rows = list(model.objects.filter(team_id__in=list(team_ids)))
    except DatabaseError:
        logger.warning("business_hours_unreadable")
        return {}
    calendars = {}
    for row in rows:
        try:
            calendar = row.calendar()
        except ValueError:
            logger.warning("business_hours_invalid", team_id=row.team_id)
            continue
        if calendar.has_hours:
            calendars[row.team_id] = calendar
    return calendars
