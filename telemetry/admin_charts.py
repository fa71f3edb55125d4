"""Server-side SVG charts for the admin: state of charge over time as one inline `<svg>`.

Owns only drawing: it takes points and returns markup. It must never load anything (no
JavaScript, no external font, image or stylesheet, no link) and never put a value into the
markup unescaped: every piece of text and every attribute goes through `format_html`.
"""

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 720
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 28
# A gap longer than this between two readings is drawn as a break, not as a straight line that
# would suggest we know what happened in between.
GAP = timedelta(hours=6)
# More points than pixels only makes the page heavier.
MAX_POINTS = WIDTH - LEFT - RIGHT


def soc_chart_svg(
    points: Sequence[tuple[datetime, float]], *, start: datetime, end: datetime
) -> SafeString:
    """An SVG line chart of state of charge (percent, 0-100) between `start` and `end`.

    `points` are (time, percent) pairs in any order; those outside the window are dropped and
    values are clamped to 0-100. With no point left, the axes carry a "no data" note.
    """
    span = (end - start).total_seconds()
    if span <= 0:
        raise ValueError("the chart window must end after it starts")
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x_of(moment: datetime) -> float:
        return LEFT + plot_w * (moment - start).total_seconds() / span

    def y_of(pct: float) -> float:
        return TOP + plot_h * (1 - min(max(pct, 0.0), 100.0) / 100)

    kept = sorted((t, float(v)) for t, v in points if start <= t <= end)
    if len(kept) > MAX_POINTS:
        step = len(kept) / MAX_POINTS
        kept = [kept[int(i * step)] for i in range(MAX_POINTS)] + [kept[-1]]

    parts = [_axes(x_of=x_of, y_of=y_of, start=start, end=end)]
    for segment in _segments(kept):
        coords = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in segment)
        if len(segment) == 1:
            x, y = coords.split(",")
            parts.append(format_html('<circle cx="{}" cy="{}" r="2.5" class="soc-dot"/>', x, y))
        else:
            parts.append(format_html('<polyline points="{}" class="soc-line"/>', coords))
    if not kept:
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" class="soc-empty">{}</text>',
                f"{LEFT + plot_w / 2:.1f}",
                f"{TOP + plot_h / 2:.1f}",
                "No state of charge reported in this period",
            )
        )
    label = f"State of charge from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        'height="{h}" role="img" aria-label="{label}" class="soc-chart">'
        "<title>{label}</title>"
        "<style>.soc-line{{fill:none;stroke:#417690;stroke-width:2}}"
        ".soc-dot{{fill:#417690}}.soc-axis{{stroke:#666;stroke-width:1}}"
        ".soc-grid{{stroke:#ddd;stroke-width:1}}"
        ".soc-label,.soc-empty{{font:11px sans-serif;fill:#555}}</style>"
        "{body}</svg>",
        w=WIDTH,
        h=HEIGHT,
        label=label,
        body=format_html_join("", "{}", ((part,) for part in parts)),
    )


def _segments(
    points: Sequence[tuple[datetime, float]],
) -> list[list[tuple[datetime, float]]]:
    segments: list[list[tuple[datetime, float]]] = []
    for point in points:
        if segments and point[0] - segments[-1][-1][0] <= GAP:
            segments[-1].append(point)
        else:
            segments.append([point])
    return segments


def _axes(
    *,
    x_of: Callable[[datetime], float],
    y_of: Callable[[float], float],
    start: datetime,
    end: datetime,
) -> SafeString:
    left, right, bottom = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM
    # format_html escapes its arguments into text first, so numbers are formatted beforehand.
    grid = format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" class="soc-grid"/>'
        '<text x="{3}" y="{4}" text-anchor="end" class="soc-label">{5}%</text>',
        (
            (left, f"{y_of(pct):.1f}", right, left - 4, f"{y_of(pct) + 4:.1f}", pct)
            for pct in (0, 25, 50, 75, 100)
        ),
    )
    # One tick per UTC midnight inside the window.
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if day < start:
        day += timedelta(days=1)
    days = []
    while day <= end:
        days.append(day)
        day += timedelta(days=1)
    ticks = format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="soc-axis"/>'
        '<text x="{0}" y="{3}" text-anchor="middle" class="soc-label">{4}</text>',
        ((f"{x_of(d):.1f}", bottom, bottom + 4, bottom + 16, f"{d:%b %d}") for d in days),
    )
    return format_html(
        '{}<line x1="{}" y1="{}" x2="{}" y2="{}" class="soc-axis"/>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="soc-axis"/>{}',
        grid,
        left,
        TOP,
        left,
        bottom,
        left,
        bottom,
        right,
        bottom,
        ticks,
    )
