"""Small server-side SVG charts for the supervisor's KPI page: grouped bars for a
series per day or week, and a histogram of durations with its median and p90
marked. No charting library and no script: the page's strict CSP stays as it
is, the chart prints, and each one carries a <title> and <desc> (named by
aria-labelledby) and the same numbers as a table for screen readers and for
anyone who wants the figures.

Colours come from classes in workspace.css (a presentation attribute would do,
but one stylesheet keeps the palette and its contrast in one place)."""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import count

from django.utils.html import escape
from django.utils.safestring import mark_safe

WIDTH = 640
HEIGHT = 240
MARGIN_LEFT = 48
MARGIN_RIGHT = 12
MARGIN_TOP = 16
MARGIN_BOTTOM = 44
_ids = count(1)
DASH = "\N{EN DASH}"

# Business-time buckets that read well for response and resolution times.
DURATION_EDGES = (
    0,
    5 * 60,
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    24 * 3600,
    3 * 24 * 3600,
)


@dataclass
class Chart:
    svg: str
    title: str
    columns: list
    rows: list = field(default_factory=list)


def duration_text(seconds):
    """90 -> "1 min 30 s", 7260 -> "2 h 1 min", 200000 -> "2 d 7 h"."""
    if seconds is None:
        return "none"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _nice_max(value):
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


# Round tops for a duration axis, so its quarters read as whole minutes or hours.
DURATION_TOPS = (60, 300, 600, 1200, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 86400, 2 * 86400)


def _nice_duration_max(value):
    for top in DURATION_TOPS:
        if value <= top:
            return top
    return _nice_max(value / 86400) * 86400


def _number(value):
    if value is None:
        return "none"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return f"{int(value)}"


def _svg_open(title, desc):
    n = next(_ids)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-{n}-title chart-{n}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart-{n}-title">{escape(title)}</title>'
        f'<desc id="chart-{n}-desc">{escape(desc)}</desc>'
    )


def _axis(top, label_of):
    """Horizontal grid lines and their labels at 0, 1/4 ... of `top`."""
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    parts = []
    for quarter in range(5):
        value = top * quarter / 4
        y = MARGIN_TOP + plot_height - plot_height * quarter / 4
        parts.append(
            f'<line class="chart-grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="chart-tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(label_of(value))}</text>'
        )
    return "".join(parts)


def bar_chart(*, title, desc, categories, series, value_label=_number, durations=False):
    """Grouped bars: `series` is [(name, [value per category])]; a None value
    draws no bar (a rate over nothing). durations=True: values are seconds, on an
    axis of whole minutes or hours."""
    values = [v for _name, data in series for v in data if v is not None]
    highest = max(values, default=0)
    top = _nice_duration_max(highest) if durations else _nice_max(highest)
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_width / max(len(categories), 1)
    bar = max(slot * 0.8 / max(len(series), 1), 1)
    parts = [_svg_open(title, desc), _axis(top, value_label)]
    for index, category in enumerate(categories):
        x0 = MARGIN_LEFT + slot * index + slot * 0.1
        for position, (name, data) in enumerate(series):
            value = data[index]
            if value is None:
                continue
            height = plot_height * value / top
            parts.append(
                f'<rect class="chart-bar chart-series-{position}" x="{x0 + bar * position:.1f}" '
                f'y="{MARGIN_TOP + plot_height - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}"><title>{escape(category)}: {escape(name)} '
                f"{escape(value_label(value))}</title></rect>"
            )
        # Every label when they fit, else about eight of them.
        every = max(1, round(len(categories) / 8))
        if index % every == 0:
            parts.append(
                f'<text class="chart-tick" x="{x0 + slot * 0.4:.1f}" '
                f'y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    parts.append(_legend([name for name, _data in series]))
    parts.append("</svg>")
    rows = [
        [category, *[value_label(data[index]) for _name, data in series]]
        for index, category in enumerate(categories)
    ]
    return Chart(
        svg=mark_safe("".join(parts)),  # noqa: S308 - every text is escaped above
        title=title,
        columns=["", *[name for name, _data in series]],
        rows=rows,
    )


def _legend(names):
    parts = []
    x = MARGIN_LEFT
    y = HEIGHT - 10
    for position, name in enumerate(names):
        parts.append(
            f'<rect class="chart-bar chart-series-{position}" x="{x}" y="{y - 9}" '
            f'width="10" height="10"/><text class="chart-legend" x="{x + 14}" y="{y}">'
            f"{escape(name)}</text>"
        )
        x += 24 + 7 * len(name)
    return "".join(parts)


def histogram(*, title, desc, samples, marks, edges=DURATION_EDGES):
    """Counts of sorted `samples` (seconds) per bucket of `edges` (the last one
    open-ended), with vertical lines at `marks` [(label, seconds)]: placed in
    their bucket in proportion to where they fall in it."""
    buckets = []
    for index, low in enumerate(edges):
        high = edges[index + 1] if index + 1 < len(edges) else None
        start = bisect_left(samples, low)
        end = bisect_left(samples, high) if high is not None else len(samples)
        label = (
            f"{duration_text(low)}{DASH}{duration_text(high)}"
            if high is not None
            else f"{duration_text(low)} or more"
        )
        if low == 0:
            label = f"under {duration_text(high)}"
        buckets.append((label, low, high, end - start))
    top = _nice_max(max((n for *_rest, n in buckets), default=0))
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_width / len(buckets)
    parts = [_svg_open(title, desc), _axis(top, _number)]
    for index, (label, _low, _high, n) in enumerate(buckets):
        x = MARGIN_LEFT + slot * index
        height = plot_height * n / top
        parts.append(
            f'<rect class="chart-bar chart-series-0" x="{x + slot * 0.08:.1f}" '
            f'y="{MARGIN_TOP + plot_height - height:.1f}" width="{slot * 0.84:.1f}" '
            f'height="{height:.1f}"><title>{escape(label)}: {n}</title></rect>'
            f'<text class="chart-tick" x="{x + slot / 2:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 16}" '
            f'text-anchor="middle">{escape(label.split(DASH)[0])}</text>'
        )
    for position, (label, value) in enumerate(marks):
        if value is None:
            continue
        index = max(bisect_right(edges, value) - 1, 0)
        low = edges[index]
        high = edges[index + 1] if index + 1 < len(edges) else low * 2 or 1
        within = min(max((value - low) / (high - low), 0), 1)
        x = MARGIN_LEFT + slot * (index + within)
        text = f"{label} {duration_text(value)}"
        parts.append(
            f'<line class="chart-mark chart-mark-{position}" x1="{x:.1f}" x2="{x:.1f}" '
            f'y1="{MARGIN_TOP}" y2="{MARGIN_TOP + plot_height}"/>'
            f'<text class="chart-mark-label" x="{x + 4:.1f}" y="{MARGIN_TOP + 12 + 14 * position}">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    rows = [[label, str(n)] for label, _low, _high, n in buckets]
    rows += [[label, duration_text(value)] for label, value in marks]
    return Chart(
        svg=mark_safe("".join(parts)),  # noqa: S308 - every text is escaped above
        title=title,
        columns=["Business time", "Conversations"],
        rows=rows,
    )
