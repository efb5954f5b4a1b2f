"""The conversations behind each KPI figure (reporting.selectors.kpi_conversations):
the drill-down lists exactly the conversations the report counts, read by the
same filters, for the known week of test_kpis."""

from datetime import date

import pytest

from reporting.selectors import DRILLDOWN_FIGURES, kpi_conversations, kpi_report
from reporting.services import kpi_rollup_days
from tests.reporting.conftest import at
from tests.reporting.test_kpis import WEEK, week  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

# Each conversation of the week by when it was opened (unique within North).
OPENED = {
    "A": at(3, 9),
    "B": at(3, 10),
    "C": at(3, 12),
    "D": at(20, 9, month=2),
    "E": at(4, 9),
    "J": at(6, 9),
    "J2": at(7, 9),
    "AGAIN": at(8, 9),
}
EXPECTED = {
    "opened": {"A", "B", "C", "E", "J", "J2", "AGAIN"},
    "resolved": {"A", "B", "C", "D", "J"},
    "fcr": {"A", "D"},
    "not_fcr": {"B", "C", "J"},
    "escalated": {"B"},
    "resolved_without_escalation": {"A", "C", "D", "J"},
    "reopened": {"C", "D"},
    "first_response": {"A", "B", "C", "D"},
    "resolution": {"A", "B", "C", "D", "J"},
}


def _figure(period, figure):
    conversations = period["conversations"]
    if figure == "not_fcr":
        return conversations["resolved"] - conversations["fcr"]
    if figure in ("first_response", "resolution"):
        return conversations[f"{figure}_seconds"]["count"]
    return conversations[figure]


def _letters(queryset):
    by_opened = {created: letter for letter, created in OPENED.items()}
    return {by_opened[c.created_at] for c in queryset}


@pytest.mark.parametrize("figure", DRILLDOWN_FIGURES)
def test_each_figure_lists_exactly_the_conversations_it_counts(week, north, figure):  # noqa: F811
    report = kpi_report(**WEEK, team_ids=[north.pk])
    listed = kpi_conversations(figure=figure, **WEEK, team_ids=[north.pk])

    assert _letters(listed) == EXPECTED[figure]
    assert listed.count() == _figure(report["period"], figure)


def test_a_day_and_a_channel_narrow_the_list_like_the_count(week, north):  # noqa: F811
    day = {"since": date(2025, 3, 3), "until": date(2025, 3, 3)}
    report = kpi_report(**day, team_ids=[north.pk], channel="sms")

    listed = kpi_conversations(figure="fcr", **day, team_ids=[north.pk], channel="sms")
    none = kpi_conversations(figure="fcr", **day, team_ids=[north.pk], channel="email")

    assert _letters(listed) == {"A", "D"}
    assert listed.count() == report["period"]["conversations"]["fcr"]
    assert none.count() == 0


def test_rolled_up_days_agree_with_the_list_while_nothing_changed(week, north):  # noqa: F811
    kpi_rollup_days(first_day=WEEK["since"], last_day=WEEK["until"])
    report = kpi_report(**WEEK, team_ids=[north.pk])

    assert report["sources"]["rolled_up_days"] == 7
    for figure in DRILLDOWN_FIGURES:
        listed = kpi_conversations(figure=figure, **WEEK, team_ids=[north.pk])
        assert listed.count() == _figure(report["period"], figure), figure


def test_the_report_gives_the_samples_its_percentiles_come_from(week, north):  # noqa: F811
    report = kpi_report(**WEEK, team_ids=[north.pk], samples=True)
    first = report["samples"]["first_response"]

    assert first == sorted(first)
    assert len(first) == report["period"]["conversations"]["first_response_seconds"]["count"]
    assert len(report["samples"]["resolution"]) == 5


def test_an_unknown_figure_is_refused(db):
    with pytest.raises(ValueError):
        kpi_conversations(figure="happiness", **WEEK)
