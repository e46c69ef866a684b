"""Render the example trend chart (docs/chart-example.svg) from made-up data.

Usage: ``python tools/chart_example.py [metric] [out.svg]`` (default ``phq9`` and
docs/chart-example.svg). The data are invented: a PHQ-9 every two weeks (one skipped, so
one stretch is a gap without a line), a six-infusion IV course over 12 days, and for the
daily metrics a session day's before and after marks.
"""

from __future__ import annotations

import math
import sys
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from api.render.chart import render_chart  # noqa: E402
from models.analytics import METRICS, MOOD_METRICS  # noqa: E402
from models.charts import (  # noqa: E402
    SCALE_RANGES,
    Chart,
    ChartPoint,
    ChartSession,
    gaps_between,
    join_days,
)
from models.instruments import CATALOGUE  # noqa: E402

START = date(2026, 3, 2)
SESSION_DAYS = (7, 9, 11, 14, 16, 18)  # three a week, as in the usual IV series
SKIPPED = (14,)  # not answered: four weeks between two totals, across the sessions


def level(metric: str, day: int) -> float:
    """A plausible course: a high baseline, a fall through the series, a partial return."""
    low, high = SCALE_RANGES[metric]
    effect = min(1.0, max(0.0, (day - 6) / 12))
    if day > 30:
        effect *= 1 - (day - 30) / 40
    share = 0.7 - 0.45 * effect + 0.06 * math.sin(day * 1.3)  # "worse is higher"
    if METRICS[metric] == "up":
        share = 1 - share
    return round(low + share * (high - low), 1)


def example_points(metric: str) -> list[ChartPoint]:
    """Daily values every day (a session day split before/after), totals every 14 days."""
    if metric not in MOOD_METRICS:
        return [
            ChartPoint(START + timedelta(days=day), float(round(level(metric, day))), 1)
            for day in range(0, 57, 14)
            if day not in SKIPPED
        ]
    points = []
    for day in range(57):
        at = START + timedelta(days=day)
        if day in SESSION_DAYS:
            number = SESSION_DAYS.index(day) + 1
            before, after = level(metric, day - 1), level(metric, day + 2)
            points.append(ChartPoint(at, before, 1, "before", number))
            points.append(ChartPoint(at, after, 2, "after", number))
        elif day != 25:  # one day without an entry
            points.append(ChartPoint(at, level(metric, day), 1))
    return points


def main(argv: list[str]) -> int:
    """Write the example chart."""
    metric = argv[0] if argv else "phq9"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "chart-example.svg"
    low, high = SCALE_RANGES[metric]
    points = example_points(metric)
    chart = Chart(
        metric=metric,
        direction=METRICS[metric],
        points_are="daily_mean" if metric in MOOD_METRICS else "total",
        low=low,
        high=high,
        bands=CATALOGUE[metric].bands if metric in CATALOGUE else (),
        date_from=START,
        date_to=START + timedelta(days=56),
        join_days=join_days(metric),
        points=tuple(points),
        gaps=gaps_between(points, join_days(metric)),
        sessions=tuple(
            ChartSession(n, START + timedelta(days=d)) for n, d in enumerate(SESSION_DAYS, 1)
        ),
        baseline=points[0].value,
    )
    out.write_text(render_chart(chart) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
