"""The supervisor's SVG charts: accessible names, escaped text, the numbers in the
fallback table, histogram buckets and where the median and p90 are drawn."""

from workspace import charts


def test_duration_text_reads_like_a_person_would_say_it():
    assert charts.duration_text(None) == "none"
    assert charts.duration_text(42) == "42 s"
    assert charts.duration_text(90) == "1 min 30 s"
    assert charts.duration_text(7260) == "2 h 1 min"
    assert charts.duration_text(2 * 86400 + 7 * 3600) == "2 d 7 h"


def test_a_bar_chart_has_title_desc_escaped_text_and_its_table():
    chart = charts.bar_chart(
        title="Opened <and> resolved",
        desc="Per day & team",
        categories=["Mon", "Tue"],
        series=[("Opened", [3, None]), ("Resolved", [1, 2])],
    )
    svg = str(chart.svg)
    assert 'role="img"' in svg and "aria-labelledby=" in svg
    assert "<title id=" in svg and "Opened &lt;and&gt; resolved" in svg
    assert "<desc id=" in svg and "Per day &amp; team" in svg
    assert "<script" not in svg and "style=" not in svg
    # A None value draws no bar: three bars and the legend's two swatches.
    assert svg.count('<rect class="chart-bar') == 3 + 2
    assert chart.rows == [["Mon", "3", "1"], ["Tue", "none", "2"]]


def test_a_duration_axis_runs_in_whole_minutes():
    chart = charts.bar_chart(
        title="t",
        desc="d",
        categories=["a"],
        series=[("x", [1])],
        durations=True,
        value_label=charts.duration_text,
    )
    assert ">1 min</text>" in str(chart.svg) and ">15 s</text>" in str(chart.svg)


def test_a_histogram_counts_each_bucket_and_marks_median_and_p90():
    samples = sorted([60, 120, 400, 700, 2000, 4000, 90000, 400000])
    chart = charts.histogram(
        title="First response",
        desc="8 conversations",
        samples=samples,
        marks=[("Median", 1350.0), ("p90", 193000.0)],
    )
    counts = dict(chart.rows[: len(charts.DURATION_EDGES)])
    assert counts["under 5 min"] == "2"
    assert counts[f"5 min{charts.DASH}15 min"] == "2"
    assert counts[f"30 min{charts.DASH}1 h"] == "1"
    assert counts[f"1 d{charts.DASH}3 d"] == "1"
    assert counts["3 d or more"] == "1"
    assert sum(int(n) for n in counts.values()) == len(samples)
    svg = str(chart.svg)
    assert "Median 22 min 30 s" in svg and "p90 2 d 5 h" in svg
    assert svg.count('class="chart-mark ') == 2
    assert chart.rows[-2:] == [["Median", "22 min 30 s"], ["p90", "2 d 5 h"]]
