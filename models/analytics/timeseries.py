"""A metric over time: buckets by local day, week or month, the 7-day rolling mean, and the
weekly slope (analytics.md "Buckets and series")."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Float, Select, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from models.analytics.metrics import measured, range_params
from models.sqltime import dialect_of, month_start, week_start

BUCKETS = ("day", "week", "month")
# The rolling window of day d: the days d-6 .. d.
WINDOW_DAYS_BEFORE = 6


@dataclass
class Bucket:
    """One bucket of a series: its first day and the statistics of its measurements.

    A dataclass: a two-year daily series has 730 of them, read field by field three times
    over, and orjson writes them as the JSON objects ``BucketOut`` describes without a dict
    per bucket: these fields are the wire format's (a test holds the two equal). Not slotted
    and not frozen: orjson writes slotted ones five times slower (300 buckets: 150 µs, 33
    µs with a __dict__), and a frozen one's __init__ sets each field through
    object.__setattr__."""

    start: date
    mean: float
    n: int
    min: float
    max: float


@dataclass
class RollingPoint:
    """One day of the 7-day rolling mean, as ``RollingOut`` describes it."""

    date: date
    mean: float


def series(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    bucket: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> list[Bucket]:
    """Buckets that have data, oldest first; from/to are local dates, both inclusive."""
    statement = _series_statement(
        metric, bucket, dialect_of(db), date_from is not None, date_to is not None
    )
    # On the session's connection: plain rows, without the ORM's result machinery (a fifth
    # of a trend request's Python time for a year of days).
    rows = db.connection().execute(statement, range_params(patient_id, date_from, date_to)).all()
    return [Bucket(*row) for row in rows]


# Statements are built once per shape and reused with new parameters: building a
# SQLAlchemy statement costs more than the database takes to run one of these.
@functools.cache
def _series_statement(
    metric: str, bucket: str, dialect: str, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    m = measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
    if bucket == "day":
        key: ColumnElement[Any] = m.c.local_date
    else:
        key = (week_start if bucket == "week" else month_start)(dialect, m.c.local_date)
    key = key.label("start")
    return (
        select(
            key,
            type_coerce(func.avg(m.c.value), Float).label("mean"),
            func.count().label("n"),
            func.min(m.c.value).label("min"),
            func.max(m.c.value).label("max"),
        )
        .group_by(key)
        .order_by(key)
    )


def rolling7(days: Sequence[Bucket]) -> list[RollingPoint]:
    """For each day d with data: the mean of the daily values of the days in [d-6, d]."""
    # Day numbers, not dates: comparing ints creates no date per step.
    numbers = [day.start.toordinal() for day in days]
    means = [day.mean for day in days]
    out: list[RollingPoint] = []
    first = 0  # oldest day still inside the window of the current day
    for i, number in enumerate(numbers):
        while numbers[first] < number - WINDOW_DAYS_BEFORE:
            first += 1
        # Summed afresh, not as a running total: no rounding drift over two years of days.
        out.append(RollingPoint(days[i].start, sum(means[first : i + 1]) / (i + 1 - first)))
    return out


def slope_per_week(days: Sequence[Bucket]) -> float | None:
    """Least-squares slope of daily values against the day number, times 7."""
    if len(days) < 2:
        return None
    xs = [b.start.toordinal() for b in days]
    ys = [b.mean for b in days]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    dxs = [x - mean_x for x in xs]
    spread = sum(dx * dx for dx in dxs)
    covariance = sum(dx * (y - mean_y) for dx, y in zip(dxs, ys, strict=True))
    return 7 * covariance / spread
