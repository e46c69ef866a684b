"""The trend chart as SVG: hand-built with ElementTree, which escapes every text and attribute.

One fixed viewBox with an intrinsic size, so the same file scales to a phone screen or an A4
page. It names no patient: it may be printed, forwarded or left on a screen.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from models.instruments import Band

SVG_NS = "http://www.w3.org/2000/svg"
SVG_MEDIA_TYPE = "image/svg+xml"
WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 56, 20, 74, 58
# With bands, their names sit right of the plot, where no data point can hide them.
BAND_LABEL_WIDTH = 104
# Rough width of one character of a session label ("S12") at 12 px bold, plus a gap; a label
# that would overlap the previous one is left out (its line and <title> remain).
LABEL_CHAR_WIDTH, LABEL_GAP = 7.5, 4
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK, MUTED, GRID = "#1f2933", "#52606d", "#d9e2ec"
LINE, SESSION = "#1f5fa8", "#7b3fa0"
# Band tints from least to most severe; a band list shorter than this takes evenly spread tints.
BAND_TINTS = ("#e3f4e8", "#f3f7dc", "#fdf3d7", "#fde6d4", "#fbdcdc")
METRIC_NAMES = {
    "mood": "Mood",
    "anxiety": "Anxiety",
    "energy": "Energy",
    "sleep_hours": "Sleep (hours)",
    "phq9": "PHQ-9",
    "gad7": "GAD-7",
    "qids_sr16": "QIDS-SR16",
    "madrs": "MADRS",
    "cadss": "CADSS",
}
# Tick spacing in days, smallest first; the chart takes the first giving at most 7 labels.
TICK_STEPS = (1, 2, 7, 14, 28, 56, 91, 182, 364)
MAX_TICKS = 7


@dataclass(frozen=True)
class ChartPoint:
    """One day with data: its local date, daily mean and number of measurements."""

    day: date
    value: float
    n: int


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _label(day: date, with_year: bool) -> str:
    text = f"{day.day} {day.strftime('%b')}"
    return f"{text} {day.year}" if with_year else text


def _y_step(span: float) -> float:
    for step in (1, 2, 3, 4, 5, 10, 20, 25, 50):
        if span / step <= 8:
            return step
    return 100


def _tints(count: int) -> list[str]:
    if count <= 1:
        return list(BAND_TINTS[:count])
    last = len(BAND_TINTS) - 1
    return [BAND_TINTS[round(i * last / (count - 1))] for i in range(count)]


def _domain(
    points: Sequence[ChartPoint],
    sessions: Sequence[tuple[int, date]],
    date_from: date | None,
    date_to: date | None,
) -> tuple[date, date]:
    days = [p.day for p in points] + [d for _, d in sessions]
    start = date_from or (min(days) if days else date_to)
    end = date_to or (max(days) if days else start)
    if start is None or end is None:
        # Nothing to place and no range asked for: a one-week frame keeps the axes drawable.
        start = end = date(2000, 1, 1)
    if end <= start:
        # A single day still needs width: centre it in a three-day frame.
        start, end = start - timedelta(days=1), end + timedelta(days=1)
    return start, end


def render_chart(
    *,
    metric: str,
    direction: str,
    low: float,
    high: float,
    points: Sequence[ChartPoint],
    sessions: Sequence[tuple[int, date]],
    bands: Sequence[Band] = (),
    date_from: date | None = None,
    date_to: date | None = None,
) -> str:
    """The daily series as an SVG line chart with session markers and severity bands."""
    name = METRIC_NAMES.get(metric, metric)
    better = "higher is better" if direction == "up" else "lower is better"
    start, end = _domain(points, sessions, date_from, date_to)
    right = RIGHT + (BAND_LABEL_WIDTH if bands else 0)
    plot_w, plot_h = WIDTH - LEFT - right, HEIGHT - TOP - BOTTOM
    span_days = (end - start).days

    def x_of(day: date) -> float:
        return LEFT + (day - start).days / span_days * plot_w

    def y_of(value: float) -> float:
        clamped = min(max(value, low), high)
        return TOP + (high - clamped) / (high - low) * plot_h

    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "preserveAspectRatio": "xMidYMid meet",
            "role": "img",
            "aria-labelledby": "chart-title chart-desc",
            "font-family": FONT,
        },
    )
    title = f"{name}: daily mean ({better})"
    ET.SubElement(svg, "title", {"id": "chart-title"}).text = title
    summary = (
        f"Daily mean {name} on a scale of {_fmt(low)} to {_fmt(high)} ({better}), "
        f"{start.isoformat()} to {end.isoformat()}: {len(points)} days with data"
    )
    if points:
        summary += f", first {_fmt(points[0].value)}, last {_fmt(points[-1].value)}"
    summary += f"; {len(sessions)} completed treatment sessions marked."
    if bands:
        summary += " Shaded bands: " + ", ".join(f"{b.label} {b.low}-{b.high}" for b in bands) + "."
    ET.SubElement(svg, "desc", {"id": "chart-desc"}).text = summary
    ET.SubElement(svg, "rect", {"width": "100%", "height": "100%", "fill": "#ffffff"})

    heading = ET.SubElement(
        svg,
        "text",
        {"x": str(LEFT), "y": "28", "fill": INK, "font-size": "19", "font-weight": "700"},
    )
    heading.text = name
    arrow = ET.SubElement(heading, "tspan", {"dx": "10", "fill": MUTED, "font-weight": "400"})
    arrow.text = f"{'↑' if direction == 'up' else '↓'} {better}"
    ET.SubElement(
        svg, "text", {"x": str(LEFT), "y": "50", "fill": MUTED, "font-size": "13"}
    ).text = (
        f"Daily mean, {_label(start, True)} to {_label(end, True)} · "
        f"{len(points)} days with data · dashed lines: sessions"
    )

    # Severity bands first, so everything else draws over them.
    band_group = ET.SubElement(svg, "g", {"class": "bands"})
    for band, tint in zip(bands, _tints(len(bands)), strict=True):
        # A band covers whole totals [low, high]; it reaches to the next band's low.
        top = y_of(min(band.high + 1, high)) if band.high < high else y_of(high)
        bottom = y_of(band.low)
        ET.SubElement(
            band_group,
            "rect",
            {
                "class": "band",
                "data-band": band.code,
                "x": str(LEFT),
                "y": f"{top:.1f}",
                "width": str(plot_w),
                "height": f"{bottom - top:.1f}",
                "fill": tint,
            },
        )
        ET.SubElement(
            band_group,
            "text",
            {
                "class": "band-label",
                "x": str(LEFT + plot_w + 6),
                "y": f"{(top + bottom) / 2 + 4:.1f}",
                "fill": MUTED,
                "font-size": "12",
            },
        ).text = band.label

    grid = ET.SubElement(svg, "g", {"class": "y-axis", "font-size": "13", "fill": MUTED})
    step = _y_step(high - low)
    tick = low
    while tick <= high + 1e-9:
        y = y_of(tick)
        ET.SubElement(
            grid,
            "line",
            {
                "x1": str(LEFT),
                "x2": str(LEFT + plot_w),
                "y1": f"{y:.1f}",
                "y2": f"{y:.1f}",
                "stroke": GRID,
                "stroke-width": "1",
            },
        )
        ET.SubElement(
            grid,
            "text",
            {
                "x": str(LEFT - 8),
                "y": f"{y + 4:.1f}",
                "text-anchor": "end",
            },
        ).text = _fmt(tick)
        tick += step
    ET.SubElement(
        grid,
        "text",
        {
            "transform": f"translate(16 {TOP + plot_h / 2:.1f}) rotate(-90)",
            "text-anchor": "middle",
            "fill": INK,
        },
    ).text = f"{name} ({_fmt(low)} to {_fmt(high)})"

    axis = ET.SubElement(svg, "g", {"class": "x-axis", "font-size": "13", "fill": MUTED})
    ET.SubElement(
        axis,
        "line",
        {
            "x1": str(LEFT),
            "x2": str(LEFT + plot_w),
            "y1": str(TOP + plot_h),
            "y2": str(TOP + plot_h),
            "stroke": MUTED,
            "stroke-width": "1",
        },
    )
    every = next((s for s in TICK_STEPS if span_days / s <= MAX_TICKS - 1), TICK_STEPS[-1])
    day, previous_year = start, None
    while day <= end:
        x = x_of(day)
        ET.SubElement(
            axis,
            "line",
            {
                "x1": f"{x:.1f}",
                "x2": f"{x:.1f}",
                "y1": str(TOP + plot_h),
                "y2": str(TOP + plot_h + 5),
                "stroke": MUTED,
            },
        )
        ET.SubElement(
            axis,
            "text",
            {
                "class": "date-label",
                "x": f"{x:.1f}",
                "y": str(TOP + plot_h + 20),
                "text-anchor": "middle",
            },
        ).text = _label(day, day.year != previous_year)
        previous_year = day.year
        day += timedelta(days=every)
    ET.SubElement(
        axis,
        "text",
        {
            "x": str(LEFT + plot_w / 2),
            "y": str(HEIGHT - 10),
            "text-anchor": "middle",
            "fill": INK,
        },
    ).text = "Local date"

    marks = ET.SubElement(svg, "g", {"class": "sessions"})
    last_x, last_width = -math.inf, 0.0
    for number, day in sessions:
        x = x_of(day)
        marker = ET.SubElement(marks, "g", {"class": "session-marker", "data-number": str(number)})
        ET.SubElement(marker, "title").text = f"Session {number}, {day.isoformat()}"
        ET.SubElement(
            marker,
            "line",
            {
                "x1": f"{x:.1f}",
                "x2": f"{x:.1f}",
                "y1": str(TOP),
                "y2": str(TOP + plot_h),
                "stroke": SESSION,
                "stroke-width": "1.5",
                "stroke-dasharray": "4 3",
            },
        )
        label = f"S{number}"
        width = LABEL_CHAR_WIDTH * len(label)
        if x - last_x < (width + last_width) / 2 + LABEL_GAP:
            continue
        last_x, last_width = x, width
        ET.SubElement(
            marker,
            "text",
            {
                "x": f"{x:.1f}",
                "y": str(TOP - 6),
                "text-anchor": "middle",
                "font-size": "12",
                "fill": SESSION,
                "font-weight": "700",
            },
        ).text = label

    series = ET.SubElement(svg, "g", {"class": "series"})
    if points:
        coordinates = " ".join(f"{x_of(p.day):.1f},{y_of(p.value):.1f}" for p in points)
        ET.SubElement(
            series,
            "polyline",
            {
                "points": coordinates,
                "fill": "none",
                "stroke": LINE,
                "stroke-width": "2",
                "stroke-linejoin": "round",
                "stroke-linecap": "round",
            },
        )
        for p in points:
            dot = ET.SubElement(
                series,
                "circle",
                {
                    "class": "point",
                    "cx": f"{x_of(p.day):.1f}",
                    "cy": f"{y_of(p.value):.1f}",
                    "r": "3.5",
                    "fill": LINE,
                    "stroke": "#ffffff",
                    "stroke-width": "1",
                },
            )
            ET.SubElement(dot, "title").text = f"{p.day.isoformat()}: {_fmt(p.value)} (n {p.n})"
    else:
        ET.SubElement(
            series,
            "text",
            {
                "x": str(LEFT + plot_w / 2),
                "y": str(TOP + plot_h / 2),
                "text-anchor": "middle",
                "font-size": "15",
                "fill": MUTED,
            },
        ).text = "No data in this range"
    return ET.tostring(svg, encoding="unicode", xml_declaration=False)
