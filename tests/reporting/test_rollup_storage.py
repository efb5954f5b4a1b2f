"""How the KPI rollup is stored: packed samples, a column per additive figure,
the migration that converted the first form, and the planner settings the
report's statements run under."""

from datetime import UTC, date, datetime
from importlib import import_module

import pytest
from django.core import serializers
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from contactcenter import sql
from reporting.fields import pack_integers, unpack_integers
from reporting.models import ADDITIVE_KEYS, KpiDailyRollup

BEFORE = [("reporting", "0001_initial")]
AFTER = [("reporting", "0002_rollup_columns_and_packed_samples")]
LATEST = [("reporting", "0004_self_service_kpis")]
# The figures that migration moved: the columns of its time, not of today's model.
MOVED_KEYS = import_module("reporting.migrations.0002_rollup_columns_and_packed_samples").KEYS


@pytest.mark.parametrize("values", [[], [0], [5, 5, 17, 3_600, 2**31 - 1], list(range(1000))])
def test_samples_pack_and_unpack_unchanged(values):
    packed = pack_integers(values)

    assert len(packed) == 4 * len(values)
    assert unpack_integers(packed) == values


def test_a_sample_beyond_four_bytes_is_refused_not_wrapped():
    with pytest.raises(OverflowError):
        pack_integers([2**31])


def test_additive_keys_are_the_rollup_columns():
    assert ADDITIVE_KEYS[0] == "calls_offered"
    assert ADDITIVE_KEYS[-1] == "self_service_came_back"
    assert len(ADDITIVE_KEYS) == 26
    assert "id" not in ADDITIVE_KEYS


@pytest.mark.django_db
def test_samples_survive_the_database_and_a_fixture(north):
    row = KpiDailyRollup.objects.create(
        day=date(2025, 3, 3),
        team=north,
        channel="sms",
        first_response_samples=[0, 60, 61],
        resolution_samples=[],
        computed_at=datetime(2025, 3, 4, tzinfo=UTC),
    )
    row.refresh_from_db()
    assert row.first_response_samples == [0, 60, 61]
    assert row.resolution_samples == []

    dumped = serializers.serialize("json", [row])
    (loaded,) = serializers.deserialize("json", dumped)
    assert loaded.object.first_response_samples == [0, 60, 61]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db
def test_migration_moves_stored_rollups_to_columns_and_back(north):
    old_apps = _migrate(BEFORE)
    old = old_apps.get_model("reporting", "KpiDailyRollup")
    metrics = {key: n + 1 for n, key in enumerate(MOVED_KEYS)}
    metrics["sentiment_delta_millionths"] = -250_000
    stored = old.objects.create(
        day=date(2025, 3, 3),
        team_id=north.pk,
        channel="sms",
        metrics=metrics,
        first_response_samples=[0, 90, 4_000],
        resolution_samples=[7_200],
        computed_at=datetime(2025, 3, 4, tzinfo=UTC),
    )
    # No deferred foreign-key checks may be pending when the migration alters the table.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    new = _migrate(AFTER).get_model("reporting", "KpiDailyRollup")
    row = new.objects.get(pk=stored.pk)
    assert {key: getattr(row, key) for key in MOVED_KEYS} == metrics
    assert row.first_response_samples == [0, 90, 4_000]
    assert row.resolution_samples == [7_200]

    back = _migrate(BEFORE).get_model("reporting", "KpiDailyRollup").objects.get(pk=stored.pk)
    assert back.metrics == metrics
    assert back.first_response_samples == [0, 90, 4_000]
    assert back.resolution_samples == [7_200]
    _migrate(LATEST)


def _planner_settings():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('plan_cache_mode'), current_setting('jit')")
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_report_statements_are_planned_per_call_without_jit_and_only_inside():
    outside = _planner_settings()
    assert outside != ("force_custom_plan", "off")
    with sql.analytic_statements():
        assert _planner_settings() == ("force_custom_plan", "off")
        assert connection.in_atomic_block
        with sql.analytic_statements():
            assert _planner_settings() == ("force_custom_plan", "off")
        assert _planner_settings() == ("force_custom_plan", "off")
    assert _planner_settings() == outside
    with sql.analytic_statements():  # not taken for nested once the outer block ended
        assert _planner_settings() == ("force_custom_plan", "off")
    assert _planner_settings() == outside
