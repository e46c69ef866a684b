"""The clinician report as one self-contained, printable HTML page (Jinja2, Flask's own).

The page is drawn from the JSON report's own document (ReportOut's dump of the one computed
report) and from that report's charts, so every figure it prints is a figure of the JSON.
Each carries the JSON pointer it came from: ``<data value="12.5" data-key="/course/phq9/
current">12.5</data>`` (dates as ``<time>``), which lets a test hold the two equal.

No scripts, no external requests: inline CSS and inline SVG only (the view sends a
Content-Security-Policy that allows nothing else).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template
from markupsafe import Markup, escape

from api.render.chart import METRIC_NAMES, Size, day_label, plural, render_chart
from models.charts import Chart
from models.instruments import CATALOGUE

HTML_MEDIA_TYPE = "text/html"
# Inline styles and the page itself; nothing else, from anywhere (the data: icon keeps
# browsers from fetching /favicon.ico for it).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The page's charts: a little wider than the API's chart.svg, to fill an A4/Letter column.
PAGE_CHART = Size(width=720, height=340)
DRUGS = {"ketamine": "Ketamine", "esketamine": "Esketamine"}
ROUTES = {
    "iv": "IV",
    "im": "IM",
    "subcutaneous": "subcutaneous",
    "intranasal": "intranasal",
    "oral": "oral",
    "sublingual": "sublingual",
}
WINDOWS = {"acute": "Acute", "day1": "Day 1", "day3": "Day 3", "day7": "Day 7"}
OPERATORS = {"<": "<", "<=": "\N{LESS-THAN OR EQUAL TO}"}
MINUS = "\N{MINUS SIGN}"
# What a figure shows when its inputs are missing (null in the JSON).
NONE = "\N{EN DASH}"


def band_labels() -> dict[str, str]:
    """Band code to label, over every instrument ("moderately_severe": "Moderately severe")."""
    return {b.code: b.label for i in CATALOGUE.values() for b in i.bands}


def resolve(document: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901) in the document."""
    value = document
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def attribute_text(value: Any) -> str:
    """A JSON value as a figure's ``value`` attribute holds it: strings as they are, null as
    empty, anything else as its JSON text."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def number_text(value: float, digits: int = 1, signed: bool = False) -> str:
    """12.25 -> "12.3" (trailing zeros dropped); signed: "+1.5", and a real minus sign."""
    text = f"{abs(value):.{digits}f}".rstrip("0").rstrip(".") if digits else f"{abs(value):.0f}"
    if text in ("0", ""):
        return "0"
    sign = MINUS if value < 0 else ("+" if signed else "")
    return f"{sign}{text}"


class Figures:
    """Prints figures of the report document, each tied to its JSON pointer."""

    def __init__(self, document: Mapping[str, Any], zone: str) -> None:
        self.document = document
        self.zone = ZoneInfo(zone)

    def __call__(self, pointer: str) -> Any:
        return resolve(self.document, pointer)

    def _data(self, pointer: str, shown: str, css: str = "") -> Markup:
        value = attribute_text(self(pointer))
        extra = f' class="{css}"' if css else ""
        # Built by hand (escape() each part): Markup.format costs several times more, and a
        # two-year page prints some 600 figures.
        return Markup(
            f'<data value="{escape(value)}" data-key="{escape(pointer)}"{extra}>'
            f"{escape(shown)}</data>"
        )

    def number(
        self, pointer: str, digits: int = 1, signed: bool = False, missing: str = NONE
    ) -> Markup:
        """A number, rounded for reading; ``missing`` when null."""
        value = self(pointer)
        shown = missing if value is None else number_text(float(value), digits, signed)
        return self._data(pointer, shown)

    def percent(self, pointer: str, missing: str = NONE) -> Markup:
        """A fraction as a whole percentage: 0.714 -> "71 %"."""
        value = self(pointer)
        shown = missing if value is None else f"{round(100 * float(value))} %"
        return self._data(pointer, shown)

    def count(self, pointer: str, singular: str, many: str | None = None) -> Markup:
        """A count with its noun in the right number: "1 day", "2 days"."""
        value = int(self(pointer))
        noun = plural(value, singular, many).split(" ", 1)[1]
        return self._data(pointer, str(value)) + Markup(" ") + noun

    def text(
        self, pointer: str, labels: Mapping[str, str] | None = None, missing: str = NONE
    ) -> Markup:
        """A code or text, through ``labels`` when given."""
        value = self(pointer)
        shown = missing if value is None else (labels or {}).get(value, str(value))
        return self._data(pointer, shown)

    def flag(
        self, pointer: str, yes: str = "yes", no: str = "no", missing: str = "not available"
    ) -> Markup:
        """A true/false label; null (inputs missing) says so rather than "no"."""
        value = self(pointer)
        shown = missing if value is None else (yes if value else no)
        return self._data(pointer, shown, "flag-yes" if value else "")

    def date(self, pointer: str, missing: str = NONE) -> Markup:
        """A local date: 6 Mar 2026."""
        value = self(pointer)
        if value is None:
            return self._data(pointer, missing)
        return _time(value, pointer, day_label(date.fromisoformat(value)))

    def local_time(self, pointer: str, offset_pointer: str) -> Markup:
        """An instant at the UTC offset it was recorded with: 09:00."""
        value, offset = self(pointer), self(offset_pointer)
        instant = datetime.fromisoformat(value) + _offset(offset)
        return _time(value, pointer, instant.strftime("%H:%M"))

    def instant(self, pointer: str) -> Markup:
        """An instant in the patient's time zone: 28 Nov 2026, 14:03 CST."""
        value = self(pointer)
        local = datetime.fromisoformat(value).astimezone(self.zone)
        shown = f"{day_label(local.date())}, {local.strftime('%H:%M')} {local.tzname()}"
        return _time(value, pointer, shown)


def _time(machine: str, pointer: str, shown: str) -> Markup:
    return Markup(
        f'<time datetime="{escape(machine)}" data-key="{escape(pointer)}">{escape(shown)}</time>'
    )


def _offset(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    hours, minutes = text[1:].split(":")
    return sign * timedelta(hours=int(hours), minutes=int(minutes))


def _index(items: Sequence[Mapping[str, Any]], key: str, value: Any) -> int:
    return next(i for i, item in enumerate(items) if item[key] == value)


def render_report_page(
    *,
    document: Mapping[str, Any],
    charts: Sequence[Chart],
    crisis_text: str,
    crisis_resources: Sequence[tuple[str, str]],
) -> str:
    """The page for one report: ``document`` is ReportOut's dump, ``charts`` the report's."""
    period = document["period"]
    sessions = [
        i
        for i, row in enumerate(document["course"]["sessions"])
        if period["from"] <= row["local_date"] <= period["to"]
    ]
    figures = [
        {
            "index": index,
            "svg": Markup(render_chart(chart, size=PAGE_CHART, element_id=f"chart-{chart.metric}")),
            "metric": chart.metric,
        }
        for index, chart in enumerate(charts)
    ]
    trends = document["trends"]
    return render_template(
        "report.html",
        doc=document,
        f=Figures(document, document["patient"]["timezone"]),
        phq9=f"/trends/{_index(trends, 'metric', 'phq9')}/summary",
        mood=f"/trends/{_index(trends, 'metric', 'mood')}/summary",
        latest_phq9=_latest_questionnaire(document, "phq9"),
        sessions=sessions,
        figures=figures,
        metric_names=METRIC_NAMES,
        instrument_names={code: i.name for code, i in CATALOGUE.items()},
        bands=band_labels(),
        drugs=DRUGS,
        routes=ROUTES,
        operators=OPERATORS,
        windows=WINDOWS,
        mood_chart=f"/charts/{_index(document['charts'], 'metric', 'mood')}",
        crisis_text=crisis_text,
        crisis_resources=crisis_resources,
    )


def _latest_questionnaire(document: Mapping[str, Any], instrument: str) -> int | None:
    """The questionnaire row of the instrument's latest total (its local date for the page)."""
    rows = document["questionnaires"]
    found = [i for i, row in enumerate(rows) if row["instrument"] == instrument]
    return found[-1] if found else None
