"""contactcenter.sql: hand-written statements read values as the ORM would."""

import datetime

import psycopg
import pytest
from django.db import connection
from psycopg.pq import Format

from contactcenter import sql
from contactcenter.models import Team

pytestmark = pytest.mark.django_db

MOMENTS = [
    datetime.datetime(2025, 3, 9, 6, 59, 59, 999_999, tzinfo=datetime.UTC),
    datetime.datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=datetime.UTC),
    datetime.datetime(2026, 11, 1, 5, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-4))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_fetched_timestamps_equal_the_orms_to_the_microsecond(moment, north):
    team = north
    Team.objects.filter(pk=team.pk).update(created_at=moment)
    orm = Team.objects.values_list("created_at", flat=True).get(pk=team.pk)

    (fetched,) = sql.fetch(
        "SELECT created_at FROM contactcenter_team WHERE id = %s",
        [team.pk],
        [Team._meta.get_field("created_at")],
    )[0]

    assert fetched == orm == moment
    assert fetched.tzinfo is orm.tzinfo is datetime.UTC


TIMESTAMPTZ = psycopg.adapters.types["timestamptz"].oid


def test_fetch_parses_timestamps_with_psycopgs_loader_and_leaves_the_orms_alone():
    with connection.cursor() as cursor:
        sql._load_timestamps_natively(cursor)
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
        assert loader is sql._TIMESTAMPTZ_LOADER
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ, Format.TEXT)
        assert loader is not sql._TIMESTAMPTZ_LOADER


def test_get_one_returns_the_orms_instance_or_none(django_assert_num_queries):
    from escalation.models import SlaPolicy

    policy = SlaPolicy.objects.order_by("priority").first() or SlaPolicy.objects.create(
        priority=2, first_response_minutes=15, next_response_minutes=60, resolution_minutes=480
    )
    orm = SlaPolicy.objects.get(priority=policy.priority)

    with django_assert_num_queries(1):
        fetched = sql.get_one(SlaPolicy, priority=policy.priority)

    assert isinstance(fetched, SlaPolicy)
    assert not fetched._state.adding
    assert {f.attname: getattr(fetched, f.attname) for f in SlaPolicy._meta.concrete_fields} == {
        f.attname: getattr(orm, f.attname) for f in SlaPolicy._meta.concrete_fields
    }
    SlaPolicy.objects.filter(pk=policy.pk).delete()
    assert sql.get_one(SlaPolicy, priority=policy.priority) is None


def test_get_one_refuses_a_column_that_is_not_unique():
    with pytest.raises(ValueError, match="not unique"):
        sql.get_one(Team, is_clinical=True)


def test_exists_says_whether_the_statement_has_a_row(north):
    statement = "SELECT 1 FROM contactcenter_team WHERE id = %s"
    assert sql.exists(statement, [north.pk]) is True
    assert sql.exists(statement, [north.pk + 10_000]) is False


def test_update_row_changes_one_row_and_respects_unless_set(north, django_assert_num_queries):
    from django.utils import timezone

    from channels_app.models import Interaction
    from tests.escalation.conftest import receive

    first, second = receive(north, "Hello"), receive(north, "Hello again")
    moment = timezone.now()

    with django_assert_num_queries(1):
        changed = sql.update_row(
            Interaction, str(first.pk), unless_set=["processed_at"], processed_at=moment
        )
    assert changed == 1
    # Set already: the condition refuses a second mark, as the inbound task relies on.
    later = moment + datetime.timedelta(minutes=5)
    again = sql.update_row(Interaction, first.pk, unless_set=["processed_at"], processed_at=later)
    assert again == 0
    assert sql.update_row(Interaction, first.pk, sentiment=-0.5) == 1

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.processed_at == moment
    assert first.sentiment == -0.5
    assert second.processed_at is None and second.sentiment is None
