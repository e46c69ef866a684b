"""A trend chart as SVG, drawn from a models.charts.Chart: hand-built with ElementTree, which
escapes every text and attribute.

One fixed viewBox with an intrinsic size, so the same drawing scales to a phone screen or an
A4 page. It names no patient: it may be printed, forwarded or left on a screen. It reads in
greyscale: marks differ by shape, lines by dash pattern, and every reference line, band and
gap carries a text label; colour only repeats what the shapes say.

Each local date owns one slot of the x axis and a point sits at its slot's centre; on a
session day the "before" mark sits left of the session line and the "after" mark right of
it, inside the slot, so x always runs in time order.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from models.charts import Chart, ChartPoint

SVG_NS = "http://www.w3.org/2000/svg"
SVG_MEDIA_TYPE = "image/svg+xml"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK, MUTED, GRID = "#1f2933", "#52606d", "#d9e2ec"
LINE, SESSION, GAP = "#1f5fa8", "#7b3fa0", "#9aa5b1"
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
# With bands, their names sit right of the plot, where no data point can hide them.
BAND_LABEL_WIDTH = 104
# Rough width of one character at 12 px, for labels that must not overlap; a session label
# that would overlap the previous one is left out (its line and <title> remain).
CHAR_WIDTH, LABEL_GAP = 6.6, 4
# Tick spacing in days (short frames) or months (frames over LONG_FRAME_DAYS), smallest
# first; the chart takes the first giving at most MAX_TICKS labels.
TICK_DAYS = (1, 2, 7, 14, 28, 56)
TICK_MONTHS = (1, 2, 3, 6, 12)
LONG_FRAME_DAYS = 120
MAX_TICKS = 7
# The legend's first baseline and row height; the plot starts below its last row.
LEGEND_Y, LEGEND_ROW = 68, 18
# How far a session day's before/after marks sit from the day's centre: under half a slot,
# so they never pass a neighbouring day's mark.
SIDE_OFFSET_SHARE, SIDE_OFFSET_MAX = 0.45, 6.0

# Labels drawn over lines and marks keep a white outline, so they stay readable.
HALO = {
    "font_size": 12,
    "fill": INK,
    "stroke": "#ffffff",
    "stroke_width": 3,
    "paint_order": "stroke",
}
STROKE = {"stroke": LINE, "stroke_width": 2, "stroke_linejoin": "round", "stroke_linecap": "round"}


@dataclass(frozen=True)
class Size:
    """The drawing's size and the margins around its plot."""

    width: int = 640
    height: int = 400
    left: int = 56
    right: int = 20
    top: int = 100
    bottom: int = 58


def plural(count: int, singular: str, many: str | None = None) -> str:
    """ "1 day", "2 days": the count with the noun in the number it needs."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


def fmt(value: float) -> str:
    """A value as the chart and the page print it: one decimal at most."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def day_label(day: date, with_year: bool = True) -> str:
    """12 Mar 2026 (or 12 Mar)."""
    text = f"{day.day} {day.strftime('%b')}"
    return f"{text} {day.year}" if with_year else text


def points_label(chart: Chart) -> str:
    """What the points are, as a chart's title says it."""
    name = METRIC_NAMES.get(chart.metric, chart.metric)
    return f"{name} total" if chart.points_are == "total" else f"{name}, daily mean"


def direction_label(chart: Chart) -> str:
    """Which way is better."""
    return "higher is better" if chart.direction == "up" else "lower is better"


@dataclass(frozen=True)
class Scale:
    """Where a local date and a value land in the plot."""

    chart: Chart
    size: Size
    start: date
    slots: int

    @property
    def right(self) -> int:
        return self.size.right + (BAND_LABEL_WIDTH if self.chart.bands else 0)

    @property
    def plot_w(self) -> float:
        return self.size.width - self.size.left - self.right

    @property
    def plot_h(self) -> float:
        return self.size.height - self.size.top - self.size.bottom

    @property
    def bottom(self) -> float:
        return self.size.top + self.plot_h

    def x_day(self, day: date) -> float:
        """The centre of a local date's slot."""
        return self.size.left + ((day - self.start).days + 0.5) * self.plot_w / self.slots

    def x_point(self, point: ChartPoint) -> float:
        """A point's x: its day's centre, a session day's marks either side of it."""
        offset = min(SIDE_OFFSET_SHARE * self.plot_w / self.slots, SIDE_OFFSET_MAX)
        shift = {"before": -offset, "after": offset}.get(point.side or "", 0.0)
        return self.x_day(point.day) + shift

    def y(self, value: float) -> float:
        low, high = self.chart.low, self.chart.high
        clamped = min(max(value, low), high)
        return self.size.top + (high - clamped) / (high - low) * self.plot_h


def _scale(chart: Chart, size: Size) -> Scale:
    start = chart.date_from or chart.date_to or date(2000, 1, 1)
    end = chart.date_to or start
    return Scale(chart, size, start, max((end - start).days + 1, 1))


def el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    """A child element: ``stroke_width=1.5`` is the attribute stroke-width="1.5" (floats to
    one decimal), ``class_`` is class."""
    element = ET.SubElement(
        parent,
        tag,
        {
            key.rstrip("_").replace("_", "-"): f"{value:.1f}"
            if isinstance(value, float)
            else str(value)
            for key, value in attrs.items()
        },
    )
    if text is not None:
        element.text = text
    return element


def render_chart(chart: Chart, *, size: Size | None = None, element_id: str = "chart") -> str:
    """The chart as one SVG document; ``element_id`` prefixes its ids (unique in a page)."""
    entries = legend_entries(chart)
    size = size or Size()
    # The plot starts below the legend's last row (a narrow chart may need two).
    rows = _legend_rows(entries, size)
    size = replace(size, top=LEGEND_Y + LEGEND_ROW * (rows[-1][0] if rows else 0) + 30)
    scale = _scale(chart, size)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {size.width} {size.height}",
            "width": str(size.width),
            "height": str(size.height),
            "preserveAspectRatio": "xMidYMid meet",
            "role": "img",
            "aria-labelledby": f"{element_id}-title {element_id}-desc",
            "font-family": FONT,
            "class": "chart",
            "data-metric": chart.metric,
        },
    )
    title = f"{points_label(chart)} ({direction_label(chart)})"
    el(svg, "title", title, id=f"{element_id}-title")
    el(svg, "desc", describe(chart), id=f"{element_id}-desc")
    _hatch(svg, element_id)
    el(svg, "rect", width="100%", height="100%", fill="#ffffff")
    _heading(svg, chart, size)
    _legend(svg, entries, rows, element_id)
    _bands(svg, scale)
    _y_axis(svg, scale)
    _x_axis(svg, scale)
    _gaps(svg, scale, element_id)
    _sessions(svg, scale)
    _baseline(svg, scale)
    _series(svg, scale)
    _latest(svg, scale)
    return ET.tostring(svg, encoding="unicode", xml_declaration=False)


def describe(chart: Chart) -> str:
    """The chart in words: its text alternative."""
    name = METRIC_NAMES.get(chart.metric, chart.metric)
    text = (
        f"{points_label(chart)} on a scale of {fmt(chart.low)} to {fmt(chart.high)} "
        f"({direction_label(chart)}), {frame_label(chart)}: {count_label(chart)}"
    )
    if chart.points:
        text += f", first {fmt(chart.points[0].value)}, latest {fmt(chart.points[-1].value)}"
    if chart.baseline is not None:
        text += f"; baseline {fmt(chart.baseline)}"
    split = sum(1 for p in chart.points if p.side is not None)
    if split and chart.points_are == "daily_mean":
        text += f"; {plural(split, 'mark')} for before or after a session on its day"
    text += f"; {plural(len(chart.sessions), 'completed treatment session')} marked"
    if chart.gaps:
        text += (
            f"; {plural(len(chart.gaps), 'gap')} of more than {plural(chart.join_days, 'day')} "
            f"between {name} points, drawn without a line"
        )
    text += "."
    if chart.bands:
        text += " Shaded bands: " + ", ".join(f"{b.label} {b.low}-{b.high}" for b in chart.bands)
        text += "."
    return text


def frame_label(chart: Chart) -> str:
    """The dates the chart spans."""
    if chart.date_from is None or chart.date_to is None:
        return "no dates"
    return f"{day_label(chart.date_from)} to {day_label(chart.date_to)}"


def count_label(chart: Chart) -> str:
    """How much the chart holds: "1 questionnaire", "12 days with data"."""
    if chart.points_are == "total":
        return plural(len(chart.points), "questionnaire")
    return plural(len({p.day for p in chart.points}), "day") + " with data"


def _hatch(svg: ET.Element, element_id: str) -> None:
    defs = el(svg, "defs")
    pattern = el(
        defs,
        "pattern",
        id=f"{element_id}-gap",
        width=6,
        height=6,
        patternUnits="userSpaceOnUse",
        patternTransform="rotate(45)",
    )
    el(pattern, "line", x1=0, y1=0, x2=0, y2=6, stroke=GAP, stroke_width=1.5)


def _heading(svg: ET.Element, chart: Chart, size: Size) -> None:
    heading = el(
        svg, "text", points_label(chart), x=size.left, y=26, fill=INK, font_size=19, font_weight=700
    )
    arrow = "↑" if chart.direction == "up" else "↓"
    el(
        heading,
        "tspan",
        f"{arrow} {direction_label(chart)}",
        dx=10,
        fill=MUTED,
        font_weight=400,
        font_size=15,
    )
    line = f"{frame_label(chart)} · {count_label(chart)}"
    el(svg, "text", line, class_="subtitle", x=size.left, y=47, fill=MUTED, font_size=13)


def legend_entries(chart: Chart) -> list[tuple[str, str]]:
    """The marks the chart uses, as (kind, label): the key says what each point is."""
    what = "one questionnaire" if chart.points_are == "total" else "mean of one day"
    entries = [("point", what)]
    sides = {p.side for p in chart.points}
    if "before" in sides:
        entries.append(("before", "before the session, that day"))
    if "after" in sides:
        entries.append(("after", "from the session on, that day"))
    if chart.sessions:
        entries.append(("session", "session"))
    if chart.baseline is not None:
        entries.append(("baseline", "baseline"))
    if chart.gaps:
        entries.append(("gap", f"gap: no line over {plural(chart.join_days, 'day')}"))
    return entries


def _legend_rows(entries: Sequence[tuple[str, str]], size: Size) -> list[tuple[int, float]]:
    """(row, x) of each legend entry: left to right, wrapping at the drawing's width."""
    placed, row, x = [], 0, float(size.left)
    for _kind, label in entries:
        width = 22 + CHAR_WIDTH * len(label)
        if x + width > size.width - size.right and x > size.left:
            row, x = row + 1, float(size.left)
        placed.append((row, x))
        x += width + 12
    return placed


def _legend(
    svg: ET.Element,
    entries: Sequence[tuple[str, str]],
    rows: Sequence[tuple[int, float]],
    element_id: str,
) -> None:
    """The marks in use, each drawn and named (the chart's key, in any colour or none)."""
    legend = el(svg, "g", class_="legend", font_size=12, fill=INK)
    for (kind, label), (row, x) in zip(entries, rows, strict=True):
        y = float(LEGEND_Y + LEGEND_ROW * row)
        item = el(legend, "g", class_=f"legend-{kind}")
        _swatch(item, kind, x + 7, y - 4, element_id)
        el(item, "text", label, x=x + 18, y=y)


def _swatch(parent: ET.Element, kind: str, x: float, y: float, element_id: str) -> None:
    if kind in ("point", "before", "after"):
        _mark(parent, None if kind == "point" else kind, x, y)
    elif kind == "session":
        el(parent, "line", x1=x, x2=x, y1=y - 7, y2=y + 7, stroke=SESSION, stroke_width=1.5)
        parent[-1].set("stroke-dasharray", "4 3")
    elif kind == "baseline":
        el(parent, "line", x1=x - 7, x2=x + 7, y1=y, y2=y, stroke=INK, stroke_width=1.5)
        parent[-1].set("stroke-dasharray", "6 2 2 2")
    else:
        fill = f"url(#{element_id}-gap)"
        el(parent, "rect", x=x - 7, y=y - 6, width=14, height=12, fill=fill, stroke=GAP)


def _mark(parent: ET.Element, side: str | None, x: float, y: float) -> ET.Element:
    """A point's shape: a disc for a day or a total, a hollow square before a session, a
    triangle after it (shapes, so greyscale keeps them apart)."""
    if side == "before":
        return el(
            parent,
            "rect",
            x=x - 4,
            y=y - 4,
            width=8,
            height=8,
            fill="#ffffff",
            stroke=LINE,
            stroke_width=1.6,
        )
    if side == "after":
        corners = f"{x:.1f},{y - 5.5:.1f} {x + 5:.1f},{y + 3.5:.1f} {x - 5:.1f},{y + 3.5:.1f}"
        return el(parent, "polygon", points=corners, fill=LINE, stroke="#ffffff", stroke_width=0.8)
    return el(parent, "circle", cx=x, cy=y, r=3.5, fill=LINE, stroke="#ffffff", stroke_width=1.0)


def _tints(count: int) -> list[str]:
    if count <= 1:
        return list(BAND_TINTS[:count])
    last = len(BAND_TINTS) - 1
    return [BAND_TINTS[round(i * last / (count - 1))] for i in range(count)]


def _bands(svg: ET.Element, scale: Scale) -> None:
    group = el(svg, "g", class_="bands")
    chart, left = scale.chart, float(scale.size.left)
    for band, tint in zip(chart.bands, _tints(len(chart.bands)), strict=True):
        # A band covers whole totals [low, high]; it reaches to the next band's low.
        top = scale.y(min(band.high + 1, chart.high) if band.high < chart.high else chart.high)
        bottom = scale.y(band.low)
        el(
            group,
            "rect",
            class_="band",
            data_band=band.code,
            x=left,
            y=top,
            width=scale.plot_w,
            height=bottom - top,
            fill=tint,
        )
        middle = (top + bottom) / 2 + 4
        x = left + scale.plot_w + 6
        el(group, "text", band.label, class_="band-label", x=x, y=middle, fill=MUTED, font_size=12)


def _y_step(span: float) -> float:
    for step in (1, 2, 3, 4, 5, 10, 20, 25, 50):
        if span / step <= 8:
            return step
    return 100


def _y_axis(svg: ET.Element, scale: Scale) -> None:
    chart, left = scale.chart, float(scale.size.left)
    grid = el(svg, "g", class_="y-axis", font_size=13, fill=MUTED)
    step = _y_step(chart.high - chart.low)
    tick = chart.low
    while tick <= chart.high + 1e-9:
        y = scale.y(tick)
        el(grid, "line", x1=left, x2=left + scale.plot_w, y1=y, y2=y, stroke=GRID, stroke_width=1.0)
        el(grid, "text", fmt(tick), x=left - 8, y=y + 4, text_anchor="end")
        tick += step
    name = METRIC_NAMES.get(chart.metric, chart.metric)
    middle = scale.size.top + scale.plot_h / 2
    label = f"{name} ({fmt(chart.low)} to {fmt(chart.high)})"
    turn = f"translate(16 {middle:.1f}) rotate(-90)"
    el(grid, "text", label, transform=turn, text_anchor="middle", fill=INK)


def tick_days(start: date, slots: int) -> list[date]:
    """The dates the x axis labels: every few days in a short frame, month starts in a long one."""
    end = start + timedelta(days=slots - 1)
    if slots <= LONG_FRAME_DAYS:
        every = next((s for s in TICK_DAYS if (slots - 1) / s <= MAX_TICKS - 1), TICK_DAYS[-1])
        return [start + timedelta(days=k) for k in range(0, slots, every)]
    months = range(start.year * 12 + start.month - 1 + (start.day > 1), end.year * 12 + end.month)
    every = next((m for m in TICK_MONTHS if len(months) / m <= MAX_TICKS), TICK_MONTHS[-1])
    return [date(i // 12, i % 12 + 1, 1) for i in months[::every]]


def _x_axis(svg: ET.Element, scale: Scale) -> None:
    axis = el(svg, "g", class_="x-axis", font_size=13, fill=MUTED)
    left, bottom = float(scale.size.left), scale.bottom
    el(axis, "line", x1=left, x2=left + scale.plot_w, y1=bottom, y2=bottom, stroke=MUTED)
    if scale.chart.date_from is None:
        return
    long_frame = scale.slots > LONG_FRAME_DAYS
    previous_year = None
    for day in tick_days(scale.start, scale.slots):
        x = scale.x_day(day)
        el(axis, "line", x1=x, x2=x, y1=bottom, y2=bottom + 5, stroke=MUTED)
        new_year = day.year != previous_year
        if long_frame:
            label = f"{day.strftime('%b')} {day.year}" if new_year else day.strftime("%b")
        else:
            label = day_label(day, new_year)
        el(axis, "text", label, class_="date-label", x=x, y=bottom + 20, text_anchor="middle")
        previous_year = day.year
    middle = left + scale.plot_w / 2
    y = float(scale.size.height - 10)
    el(axis, "text", "Local date", x=middle, y=y, text_anchor="middle", fill=INK)


def _gaps(svg: ET.Element, scale: Scale, element_id: str) -> None:
    group = el(svg, "g", class_="gaps")
    name = METRIC_NAMES.get(scale.chart.metric, scale.chart.metric)
    for gap in scale.chart.gaps:
        x1, x2 = scale.x_day(gap.after), scale.x_day(gap.before)
        item = el(
            group,
            "g",
            class_="gap",
            data_after=gap.after.isoformat(),
            data_before=gap.before.isoformat(),
            data_days=gap.days,
        )
        el(
            item,
            "title",
            f"No {name} between {day_label(gap.after)} and {day_label(gap.before)}: "
            f"{plural(gap.days, 'day')} apart, so no line joins them",
        )
        el(
            item,
            "rect",
            x=x1,
            y=float(scale.size.top),
            width=x2 - x1,
            height=scale.plot_h,
            fill=f"url(#{element_id}-gap)",
        )
        text = f"{gap.days} days"
        if x2 - x1 >= CHAR_WIDTH * len(text) + 8:
            x, y = (x1 + x2) / 2, scale.bottom - 8
            el(item, "text", text, class_="gap-label", x=x, y=y, text_anchor="middle", **HALO)


def _sessions(svg: ET.Element, scale: Scale) -> None:
    marks = el(svg, "g", class_="sessions")
    last_x, last_width = -math.inf, 0.0
    top = float(scale.size.top)
    for session in scale.chart.sessions:
        x = scale.x_day(session.day)
        marker = el(
            marks,
            "g",
            class_="session-marker",
            data_number=session.number,
            data_date=session.day.isoformat(),
        )
        el(marker, "title", f"Session {session.number}, {session.day.isoformat()}")
        el(marker, "line", x1=x, x2=x, y1=top, y2=scale.bottom, stroke=SESSION, stroke_width=1.5)
        marker[-1].set("stroke-dasharray", "4 3")
        label = f"S{session.number}"
        width = 1.15 * CHAR_WIDTH * len(label)  # bold
        if x - last_x < (width + last_width) / 2 + LABEL_GAP:
            continue
        last_x, last_width = x, width
        el(
            marker,
            "text",
            label,
            x=x,
            y=top - 6,
            text_anchor="middle",
            font_size=12,
            fill=SESSION,
            font_weight=700,
        )


def _baseline(svg: ET.Element, scale: Scale) -> None:
    value = scale.chart.baseline
    if value is None:
        return
    y, left = scale.y(value), float(scale.size.left)
    group = el(svg, "g", class_="baseline", data_value=repr(float(value)))
    el(group, "line", x1=left, x2=left + scale.plot_w, y1=y, y2=y, stroke=INK, stroke_width=1.5)
    group[-1].set("stroke-dasharray", "6 2 2 2")
    text = f"baseline {fmt(value)}"
    x, y_text = clear_spot(scale, y, CHAR_WIDTH * len(text))
    el(group, "text", text, class_="baseline-label", x=x, y=y_text, font_weight=700, **HALO)


def clear_spot(scale: Scale, y: float, width: float) -> tuple[float, float]:
    """Where a label ``width`` wide sits on the line at ``y`` without covering a point:
    the leftmost free place just above the line, else just below, else the left end."""
    marks = [(scale.x_point(p), scale.y(p.value)) for p in scale.chart.points]
    left = scale.size.left + 4.0
    for baseline in (y - 5, y + 15):
        x = left
        while x + width <= scale.size.left + scale.plot_w - 4:
            if not any(
                x - 6 <= mx <= x + width + 6 and baseline - 17 <= my <= baseline + 6
                for mx, my in marks
            ):
                return x, baseline
            x += 8
    return left, y - 5


def segments(points: Sequence[ChartPoint], limit: int) -> list[list[ChartPoint]]:
    """Runs of consecutive points no more than ``limit`` days apart: one line each."""
    runs: list[list[ChartPoint]] = []
    for point in points:
        if runs and (point.day - runs[-1][-1].day).days <= limit:
            runs[-1].append(point)
        else:
            runs.append([point])
    return runs


def _series(svg: ET.Element, scale: Scale) -> None:
    chart = scale.chart
    group = el(svg, "g", class_="series")
    if not chart.points:
        x, y = scale.size.left + scale.plot_w / 2, scale.size.top + scale.plot_h / 2
        text = "No data in this range"
        el(group, "text", text, x=x, y=y, text_anchor="middle", font_size=15, fill=MUTED)
        return
    for run in segments(chart.points, chart.join_days):
        if len(run) > 1:
            line = " ".join(f"{scale.x_point(p):.1f},{scale.y(p.value):.1f}" for p in run)
            el(group, "polyline", class_="segment", points=line, fill="none", **STROKE)
    for point in chart.points:
        x, y = scale.x_point(point), scale.y(point.value)
        mark = el(
            group,
            "g",
            class_="point",
            transform=f"translate({x:.2f} {y:.2f})",
            data_date=point.day.isoformat(),
            data_value=repr(point.value),
            data_n=point.n,
            data_side=point.side or "",
        )
        _mark(mark, point.side, 0.0, 0.0)
        where = f" {point.side} session {point.session_number}" if point.side else ""
        el(mark, "title", f"{point.day.isoformat()}{where}: {fmt(point.value)} (n {point.n})")


def _latest(svg: ET.Element, scale: Scale) -> None:
    point = scale.chart.latest
    if point is None:
        return
    x, y = scale.x_point(point), scale.y(point.value)
    group = el(
        svg, "g", class_="latest", data_value=repr(point.value), data_date=point.day.isoformat()
    )
    el(group, "circle", cx=x, cy=y, r=7, fill="none", stroke=INK, stroke_width=1.5)
    text = f"latest {fmt(point.value)}"
    width = CHAR_WIDTH * len(text)
    marks = [(scale.x_point(p), scale.y(p.value)) for p in scale.chart.points[:-1]]
    left, right = scale.size.left, scale.size.left + scale.plot_w
    # Above or below, right or left of the point: the first place clear of other marks
    # and inside the plot; else above, towards the plot's inside.
    for dy in (-11.0, 19.0):
        for dx in (10.0, -10.0 - width):
            box = (x + dx, y + dy - 12, x + dx + width, y + dy + 3)
            inside = left <= box[0] and box[2] <= right and box[1] >= scale.size.top - 4
            if inside and not any(
                box[0] - 4 <= mx <= box[2] + 4 and box[1] - 4 <= my <= box[3] + 4
                for mx, my in marks
            ):
                _latest_label(group, text, x + dx, y + dy)
                return
    _latest_label(group, text, x + (10.0 if x + 10 + width <= right else -10.0 - width), y - 11)


def _latest_label(group: ET.Element, text: str, x: float, y: float) -> None:
    el(group, "text", text, class_="latest-label", x=x, y=y, font_weight=700, **HALO)
