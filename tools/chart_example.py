"""Render the example trend chart (docs/chart-example.svg) from made-up data.

Usage: ``python tools/chart_example.py [metric] [out.svg]`` (default ``phq9`` and
docs/chart-example.svg). The data are invented: a six-infusion IV course over 12 days.
"""

from __future__ import annotations

import math
import sys
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from models.analytics import METRICS  # noqa: E402
from models.instruments import CATALOGUE  # noqa: E402
from models.reports import SCALE_RANGES  # noqa: E402
from schemas.chart import ChartPoint, render_chart  # noqa: E402

START = date(2026, 3, 2)
SESSION_DAYS = (7, 9, 11, 14, 16, 18)  # three a week, as in the usual IV series


def example_points(metric: str) -> list[ChartPoint]:
    """A plausible course: a high baseline, a fall through the series, a partial return."""
    low, high = SCALE_RANGES[metric]
    points = []
    step = 1 if metric in ("mood", "anxiety", "energy", "sleep_hours") else 3
    for day in range(0, 49, step):
        # 0 before treatment, 1 at its fullest, easing off after the last infusion.
        effect = min(1.0, max(0.0, (day - 6) / 12))
        if day > 30:
            effect *= 1 - (day - 30) / 40
        wobble = 0.06 * math.sin(day * 1.3)
        level = 0.7 - 0.45 * effect + wobble  # share of the range, "worse is higher"
        if METRICS[metric] == "up":
            level = 1 - level
        points.append(ChartPoint(START + timedelta(days=day), low + level * (high - low), 1))
    return points


def main(argv: list[str]) -> int:
    """Write the example chart."""
    metric = argv[0] if argv else "phq9"
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "chart-example.svg"
    low, high = SCALE_RANGES[metric]
    svg = render_chart(
        metric=metric,
        direction=METRICS[metric],
        low=low,
        high=high,
        points=example_points(metric),
        sessions=[(n, START + timedelta(days=d)) for n, d in enumerate(SESSION_DAYS, start=1)],
        bands=CATALOGUE[metric].bands if metric in CATALOGUE else (),
    )
    out.write_text(svg + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
