"""A connector's charts as inline SVG, drawn on the server: no script, nothing from elsewhere,
so the pages' Content-Security-Policy stays as strict as it is.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and summed up by its ``<desc>``
(what a screen reader reads); every bar and point has its own ``<title>`` (the figures on
hover), and the page lists the same figures in a table. Colours come from console.css
classes, so the charts follow the light and dark schemes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from hookstream.services.activity import OUTCOMES, Activity, Bucket

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
LABELS = {"delivered": "delivered", "refused": "refused (not 2xx)",
          "no_answer": "no answer"}


def hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def span(activity: Activity, bucket: Bucket) -> str:
    """A bucket's time range, as the console writes times (UTC)."""
    return f"{hhmm(bucket.start_ms)}–{hhmm(bucket.start_ms + activity.bucket_ms)} UTC"


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5 × 10^n at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def ms_text(ms: int | None) -> str:
    if ms is None:
        return "–"
    return f"{ms / 1000:g} s" if ms >= 10_000 else f"{ms} ms"


def _frame(chart_id: str, title: str, desc: str, top: int, unit: str, activity: Activity,
           body: list[str], empty: bool) -> Markup:
    """The svg element, its axes, gridlines and time labels around ``body``."""
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + PLOT_H * (1 - fraction)
        value = top * fraction
        label = f"{value:g}" if unit != "ms" else ms_text(int(value))
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(label)}</text>')
    slots = len(activity.buckets)
    for i, bucket in enumerate(activity.buckets):
        if bucket.start_ms % (4 * 3600_000) == 0:
            x = LEFT + PLOT_W * i / slots
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" '
                         f'text-anchor="middle">{hhmm(bucket.start_ms)}</text>')
    parts.extend(body)
    if empty:
        parts.append(f'<text class="empty-chart" x="{LEFT + PLOT_W / 2:.1f}" '
                     f'y="{TOP + PLOT_H / 2:.1f}" text-anchor="middle">No attempts in the '
                     f'last 24 hours</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def attempts_chart(activity: Activity) -> Markup:
    """Attempts per bucket, stacked by outcome."""
    top = nice_ceiling(max((b.total for b in activity.buckets), default=0))
    slots = len(activity.buckets)
    width = PLOT_W / slots
    body: list[str] = []
    for i, bucket in enumerate(activity.buckets):
        if not bucket.total:
            continue
        figures = ", ".join(f"{bucket.counts[o]} {LABELS[o]}" for o in OUTCOMES)
        body.append(f'<g class="bar"><title>{span(activity, bucket)}: {figures}</title>')
        base = 0
        for outcome in OUTCOMES:
            n = bucket.counts[outcome]
            if not n:
                continue
            y0 = TOP + PLOT_H * (1 - base / top)
            y1 = TOP + PLOT_H * (1 - (base + n) / top)
            body.append(
                f'<rect class="o-{outcome}" x="{LEFT + i * width:.2f}" y="{y1:.2f}" '
                f'width="{max(width - 0.5, 0.5):.2f}" height="{y0 - y1:.2f}" '
                f'data-count="{n}"/>'
            )
            base += n
        body.append("</g>")
    minutes = activity.bucket_ms // 60_000
    totals = activity.totals
    desc = (
        f"Delivery attempts per {minutes} minutes over the last 24 hours, by outcome: "
        + ", ".join(f"{totals[o]} {LABELS[o]}" for o in OUTCOMES)
        + f" in all. The highest {minutes} minutes had "
        f"{max((b.total for b in activity.buckets), default=0)} attempts."
        if activity.total else "No delivery attempts in the last 24 hours."
    )
    return _frame("chart-attempts", f"Delivery attempts per {minutes} minutes, last 24 hours",
                  desc, top, "count", activity, body, not activity.total)


def latency_chart(activity: Activity) -> Markup:
    """p50 and p99 latency per bucket, as two lines (broken where a bucket had no attempt)."""
    top = nice_ceiling(max((b.p99_ms or 0 for b in activity.buckets), default=0))
    slots = len(activity.buckets)
    width = PLOT_W / slots
    body: list[str] = []
    for name in ("p99", "p50"):
        path: list[str] = []
        points: list[str] = []
        gap = True
        for i, bucket in enumerate(activity.buckets):
            value = bucket.p99_ms if name == "p99" else bucket.p50_ms
            if value is None:
                gap = True
                continue
            x = LEFT + (i + 0.5) * width
            y = TOP + PLOT_H * (1 - value / top)
            path.append(f"{'M' if gap else 'L'}{x:.2f} {y:.2f}")
            gap = False
            points.append(f'<circle class="l-{name}" cx="{x:.2f}" cy="{y:.2f}" r="2.2" '
                          f'data-ms="{value}"><title>{span(activity, bucket)}: {name} '
                          f'{ms_text(value)}</title></circle>')
        if path:
            body.append(f'<path class="l-{name}" d="{" ".join(path)}"/>')
        body.extend(points)
    minutes = activity.bucket_ms // 60_000
    desc = (
        f"p50 and p99 latency of the delivery attempts, per {minutes} minutes, over the last "
        f"24 hours. Over the whole day: p50 {ms_text(activity.p50_ms)}, p99 "
        f"{ms_text(activity.p99_ms)}."
        if activity.total else "No delivery attempts in the last 24 hours, so no latency."
    )
    return _frame("chart-latency", f"Latency (p50, p99) per {minutes} minutes, last 24 hours",
                  desc, top, "ms", activity, body, not activity.total)
