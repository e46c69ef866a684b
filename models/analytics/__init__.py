"""Trend analytics, exactly as ../shared/analytics.md defines them.

SQL does the aggregating (grouped by the patient's local date, bounded by the requested
range); Python only walks the small per-day or per-window results that come back.

One module per topic, and callers import from the package, which names the public API:
- ``metrics``: the metrics, which way is better, their measurements as SQL;
- ``timeseries``: buckets, the 7-day rolling mean, the weekly slope;
- ``summaries``: baseline, current level, change and its labels, relapse;
- ``session_effects``: pre values, effect windows, durability, the course summary.
"""

from models.analytics.metrics import (
    INSTRUMENT_METRICS,
    METRICS,
    MOOD_METRICS,
    Direction,
    improvement_of,
    is_better_or_equal_failure,
    measurements,
)
from models.analytics.session_effects import (
    EFFECT_WINDOWS,
    PRE_FALLBACK_WINDOW,
    Effect,
    Window,
    completed_sessions,
    course_summary,
    effects,
    pre_values,
)
from models.analytics.summaries import (
    BASELINE_WINDOW,
    CURRENT_WINDOW,
    Current,
    Summary,
    baseline,
    current,
    levels,
    relapse,
    summarise,
    summary,
)
from models.analytics.timeseries import BUCKETS, Bucket, rolling7, series, slope_per_week

__all__ = [
    "BASELINE_WINDOW",
    "BUCKETS",
    "CURRENT_WINDOW",
    "EFFECT_WINDOWS",
    "INSTRUMENT_METRICS",
    "METRICS",
    "MOOD_METRICS",
    "PRE_FALLBACK_WINDOW",
    "Bucket",
    "Current",
    "Direction",
    "Effect",
    "Summary",
    "Window",
    "baseline",
    "completed_sessions",
    "course_summary",
    "current",
    "effects",
    "improvement_of",
    "is_better_or_equal_failure",
    "levels",
    "measurements",
    "pre_values",
    "relapse",
    "rolling7",
    "series",
    "slope_per_week",
    "summarise",
    "summary",
]
