from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from channels_app.models import ChannelAccount
from config.celery import app as celery_app
from patients.models import Channel
from patients.services import appointment_create
from reminders.models import Reminder
from reminders.services import reminder_policy_create_default
from tests.channels_app.conftest import PRACTICE_NUMBER, twilio_signed
from tests.factories import TeamFactory, make_patient

LA_NAME = "America/Los_Angeles"
LOS_ANGELES = ZoneInfo(LA_NAME)
PATIENT_PHONE = "+14155550100"


def next_monday_0900_la(*, weeks_ahead=2):
    """09:00 in Los Angeles on the Monday weeks_ahead weeks after the next one (more
    than 14 days ahead by default), so every reminder is still ahead when booked."""
    today = timezone.now().astimezone(LOS_ANGELES).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7) + timedelta(weeks=weeks_ahead)
    return datetime(monday.year, monday.month, monday.day, 9, tzinfo=LOS_ANGELES)


def in_days_at_0900_la(days):
    """09:00 in Los Angeles, days from today (a lead time under two weeks keeps the
    long-lead risk factor out of a test)."""
    day = timezone.now().astimezone(LOS_ANGELES).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, 9, tzinfo=LOS_ANGELES)


def la(moment):
    return moment.astimezone(LOS_ANGELES)


def reminders_of(appointment):
    """{offset minutes: Reminder}, fresh from the database."""
    return {row.offset_minutes: row for row in Reminder.objects.filter(appointment=appointment)}


@pytest.fixture
def policy(db):
    # Transactional tests empty every table afterwards, the shipped policy with them.
    return reminder_policy_create_default()


@pytest.fixture
def front_desk(db):
    return TeamFactory(name="Front desk")


@pytest.fixture
def sms_account(front_desk):
    return ChannelAccount.objects.create(
        kind=Channel.SMS, name="Main line", address=PRACTICE_NUMBER, team=front_desk
    )


@pytest.fixture
def patient(front_desk):
    return make_patient(
        team=front_desk,
        phones=[PATIENT_PHONE],
        given_name="Ada",
        family_name="Lovelace",
        time_zone=LA_NAME,
    )


@pytest.fixture
def appointment(policy, sms_account, patient):
    return appointment_create(
        patient=patient, starts_at=next_monday_0900_la(), location="Main campus, room 2"
    )


@pytest.fixture
def post_twilio(client):
    def post(path, params):
        return client.post(path, params, **twilio_signed(path, params))

    return post


@pytest.fixture
def purge_our_queues():
    """Tests that queue sends without a worker empty this test run's own queues (the
    broker keys carry the run's prefix) so nothing lingers in the shared Redis."""
    yield
    celery_app.conf.task_queues  # noqa: B018 - forces queue declaration
    celery_app.control.purge()
