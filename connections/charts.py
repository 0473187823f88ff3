"""The health history of a connection as a small timeline chart.

``health_timeline`` turns health check rows into the geometry of a
server-rendered SVG (``templates/connections/_health_chart.html``): a status
strip (each check colours the time from it to the next one) and a latency
line above it. Plain data in, plain data out, so it is tested without HTTP
and the template only places what is computed here. Colours come from the
stylesheet through class names: the page's CSP allows no inline style.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from statistics import median
from typing import Protocol

# The SVG's coordinate system (viewBox); the stylesheet scales it to the page.
WIDTH = 720
HEIGHT = 196
PLOT_LEFT = 64
PLOT_RIGHT = WIDTH - 12
LATENCY_TOP = 14
LATENCY_BOTTOM = 122
STRIP_TOP = 134
STRIP_HEIGHT = 18
AXIS_LABEL_Y = STRIP_TOP + STRIP_HEIGHT + 18
# A check is never drawn narrower than this, however dense the history.
MIN_SEGMENT_WIDTH = 2.0
# When there is a single check, how much time its segment covers.
SINGLE_CHECK_SPAN = timedelta(minutes=5)

# Status of one check, named like the connection states it leads to
# (connections/health.py FAILURE_STATES), with the labels people read.
CONNECTED = "connected"
DEGRADED = "degraded"
NEEDS_RECONNECT = "needs_reconnect"
MISCONFIGURED = "misconfigured"
TRANSIENT_STATUS = frozenset({408, 425, 429})
STATUS_LABELS = {
    CONNECTED: "Connected",
    DEGRADED: "Degraded",
    NEEDS_RECONNECT: "Needs reconnect",
    MISCONFIGURED: "Misconfigured",
}


class CheckRow(Protocol):
    """What the chart needs of a health check (``connections.models.HealthCheck``)."""

    checked_at: datetime
    ok: bool
    status_code: int | None
    latency_ms: int | None
    error: str


@dataclass(frozen=True)
class Segment:
    """The stretch of the status strip one check colours."""

    x: float
    width: float
    status: str
    label: str
    checked_at: datetime
    latency_ms: int | None
    error: str


@dataclass(frozen=True)
class Point:
    """One check on the latency line; ``measured`` is False for a check that
    got no answer (drawn on the baseline, outside the line)."""

    x: float
    y: float
    ok: bool
    measured: bool


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class TimelineChart:
    segments: list[Segment]
    # One "x,y x,y ..." per unbroken run of measured checks.
    lines: list[str]
    points: list[Point]
    ticks: list[Tick]
    start: datetime
    end: datetime
    count: int
    ok_count: int
    failed_count: int
    min_latency_ms: int | None
    max_latency_ms: int | None
    statuses: list[tuple[str, str]]  # (status, label) present, for the legend

    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = PLOT_LEFT
    plot_right: int = PLOT_RIGHT
    latency_top: int = LATENCY_TOP
    latency_bottom: int = LATENCY_BOTTOM
    strip_top: int = STRIP_TOP
    strip_height: int = STRIP_HEIGHT
    axis_label_y: int = AXIS_LABEL_Y

    @property
    def strip_middle(self) -> float:
        return self.strip_top + self.strip_height / 2

    @property
    def label_x(self) -> int:
        """Where the labels left of the plot end."""
        return self.plot_left - 8


def check_status(check: CheckRow) -> str:
    """The status a check stands for, read from its answer the way the health
    state machine (connections/health.py) reads a failure: refused
    credentials need reconnecting; no answer, a 5xx, 408, 425 or 429 is
    transient (Degraded); any other refusal (403, 404, 400...) means the
    connection is set up wrong (Misconfigured)."""
    if check.ok:
        return CONNECTED
    code = check.status_code
    if code is None or code >= 500 or code in TRANSIENT_STATUS:
        return DEGRADED
    if code == 401 or 200 <= code < 300:
        # 200 with {"ok": false} is how Slack-style providers refuse a token.
        return NEEDS_RECONNECT
    return MISCONFIGURED


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 10:
        return 10
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def format_ms(value: float) -> str:
    """ "250 ms", "1.5 s": an axis label."""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


def _round(value: float) -> float:
    return round(value, 1)


def health_timeline(checks: Iterable[CheckRow]) -> TimelineChart | None:
    """The chart of these checks (any order), or None when there are none."""
    rows = sorted(checks, key=lambda check: check.checked_at)
    if not rows:
        return None

    times = [row.checked_at for row in rows]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    positive = [gap for gap in gaps if gap > timedelta(0)]
    # The last check colours as long as checks are usually apart.
    tail = median(positive) if positive else SINGLE_CHECK_SPAN
    start, end = times[0], times[-1] + tail
    span = (end - start).total_seconds()
    plot_width = PLOT_RIGHT - PLOT_LEFT

    def x_of(moment: datetime) -> float:
        return PLOT_LEFT + (moment - start).total_seconds() / span * plot_width

    segments = []
    for index, row in enumerate(rows):
        left = x_of(row.checked_at)
        right = x_of(times[index + 1]) if index + 1 < len(rows) else PLOT_RIGHT
        width = max(right - left, MIN_SEGMENT_WIDTH)
        left = min(left, PLOT_RIGHT - width)
        status = check_status(row)
        segments.append(
            Segment(
                x=_round(left),
                width=_round(width),
                status=status,
                label=STATUS_LABELS[status],
                checked_at=row.checked_at,
                latency_ms=row.latency_ms,
                error=row.error,
            )
        )

    latencies = [row.latency_ms for row in rows if row.latency_ms is not None]
    top = nice_ceiling(max(latencies)) if latencies else 100
    latency_height = LATENCY_BOTTOM - LATENCY_TOP

    def y_of(latency: int) -> float:
        return LATENCY_BOTTOM - latency / top * latency_height

    points: list[Point] = []
    lines: list[str] = []
    run: list[str] = []
    for row in rows:
        x = _round(x_of(row.checked_at))
        if row.latency_ms is None:
            points.append(Point(x=x, y=LATENCY_BOTTOM, ok=row.ok, measured=False))
            if run:
                lines.append(" ".join(run))
                run = []
            continue
        y = _round(y_of(row.latency_ms))
        points.append(Point(x=x, y=y, ok=row.ok, measured=True))
        run.append(f"{x},{y}")
    if run:
        lines.append(" ".join(run))
    # A lone measured point is drawn as its marker; a line needs two.
    lines = [line for line in lines if " " in line]

    ticks = [Tick(y=_round(y_of(value)), label=format_ms(value)) for value in (0, top / 2, top)]
    present = {segment.status for segment in segments}
    ok_count = sum(1 for row in rows if row.ok)
    return TimelineChart(
        segments=segments,
        lines=lines,
        points=points,
        ticks=ticks,
        start=times[0],
        end=times[-1],
        count=len(rows),
        ok_count=ok_count,
        failed_count=len(rows) - ok_count,
        min_latency_ms=min(latencies) if latencies else None,
        max_latency_ms=max(latencies) if latencies else None,
        statuses=[(status, label) for status, label in STATUS_LABELS.items() if status in present],
    )
