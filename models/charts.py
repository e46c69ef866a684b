"""What a trend chart shows, decided once so that the SVG and the JSON report tell one story.

- A point is what was measured: each questionnaire's total for an instrument; for the daily
  values (mood, anxiety, energy, sleep) the mean of one local day's entries, except on the
  day of a completed session, where the entries before the session's start and those from
  its start on are two points of their own (one daily mean would mix the pre and post
  check-ins and hide the session's acute effect).
- A line joins two consecutive points only when their local dates are at most the metric's
  join limit apart (1.5 times its usual interval); a longer stretch is a gap: no line
  crosses it, and the chart marks it. A line across it would show a change nobody measured.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from models.analytics import (
    INSTRUMENT_METRICS,
    METRICS,
    MOOD_METRICS,
    Direction,
    measurements,
    series,
)
from models.assessments import Assessment
from models.due import PHQ9_INTERVAL
from models.instruments import CATALOGUE, Band
from models.mood import MoodEntry
from models.sessions import TreatmentSession

Side = Literal["before", "after"]
PointsAre = Literal["daily_mean", "total"]

# How often each metric is usually measured, in days: the daily values every day; PHQ-9 and
# GAD-7 on the due list's 14-day schedule; QIDS-SR16 (7-day recall), MADRS and CADSS weekly.
USUAL_INTERVAL_DAYS: dict[str, int] = {
    **dict.fromkeys(MOOD_METRICS, 1),
    "phq9": PHQ9_INTERVAL.days,
    "gad7": PHQ9_INTERVAL.days,
    "qids_sr16": 7,
    "madrs": 7,
    "cadss": 7,
}
# A line may cross up to 1.5 usual intervals: PHQ-9 21 days (the 14-day schedule plus the
# 7 days the phone keeps asking), weekly instruments 10, daily values 1 (consecutive days).
JOIN_FACTOR = 1.5
# The y range a chart draws for each metric: the field range (mood.py) or the total range.
SCALE_RANGES: dict[str, tuple[float, float]] = {
    "mood": (0, 10),
    "anxiety": (0, 10),
    "energy": (0, 10),
    "sleep_hours": (0, 24),
    **{code: (CATALOGUE[code].total_min, CATALOGUE[code].total_max) for code in INSTRUMENT_METRICS},
}


def join_days(metric: str) -> int:
    """The longest stretch, in days between local dates, a chart's line may cross."""
    return int(USUAL_INTERVAL_DAYS[metric] * JOIN_FACTOR)


@dataclass(frozen=True)
class ChartPoint:
    """One mark: a local date, its value and how many measurements it stands for.

    ``side`` is set on the day of a completed session: the point holds the measurements
    before that session's start, or those from its start on."""

    day: date
    value: float
    n: int
    side: Side | None = None
    session_number: int | None = None


@dataclass(frozen=True)
class ChartGap:
    """A stretch longer than the join limit between two consecutive points."""

    after: date
    before: date

    @property
    def days(self) -> int:
        """Days between the two points' local dates."""
        return (self.before - self.after).days


@dataclass(frozen=True)
class ChartSession:
    """A completed session drawn on the chart: its number in the course and local date."""

    number: int
    day: date


@dataclass(frozen=True)
class Chart:
    """Everything a trend chart draws, in local dates; the frame is inclusive."""

    metric: str
    direction: Direction
    points_are: PointsAre
    low: float
    high: float
    bands: tuple[Band, ...]
    date_from: date | None
    date_to: date | None
    join_days: int
    points: tuple[ChartPoint, ...]
    gaps: tuple[ChartGap, ...]
    sessions: tuple[ChartSession, ...]
    baseline: float | None

    @property
    def latest(self) -> ChartPoint | None:
        """The last point in time, which the chart labels with its value."""
        return self.points[-1] if self.points else None


def _local_start(session: TreatmentSession) -> date:
    return (session.started_at + timedelta(minutes=session.utc_offset_minutes)).date()


def _in(day: date, date_from: date | None, date_to: date | None) -> bool:
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


def gaps_between(points: Sequence[ChartPoint], limit: int) -> tuple[ChartGap, ...]:
    """The stretches between consecutive points longer than ``limit`` days."""
    return tuple(
        ChartGap(a.day, b.day) for a, b in pairwise(points) if (b.day - a.day).days > limit
    )


def build_chart(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    course: Sequence[TreatmentSession],
    baseline: float | None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Chart:
    """The chart of one metric over [date_from, date_to] (local dates; open ends follow the
    data). ``course`` is the patient's completed sessions in order; ``baseline`` the metric's
    (analytics.md), drawn as a reference line."""
    # The first completed session of each local date splits that day (two in one day are
    # rare; the second then falls in the first's "after" point).
    split: dict[date, tuple[int, datetime]] = {}
    for number, session in enumerate(course, start=1):
        split.setdefault(_local_start(session), (number, session.started_at))
    if metric in MOOD_METRICS:
        points = _daily_points(db, patient_id, metric, date_from, date_to, split)
    else:
        points = _total_points(db, patient_id, metric, date_from, date_to, split)
    marks = tuple(
        ChartSession(number, _local_start(s))
        for number, s in enumerate(course, start=1)
        if _in(_local_start(s), date_from, date_to)
    )
    days = [p.day for p in points] + [m.day for m in marks]
    low, high = SCALE_RANGES[metric]
    limit = join_days(metric)
    return Chart(
        metric=metric,
        direction=METRICS[metric],
        points_are="daily_mean" if metric in MOOD_METRICS else "total",
        low=low,
        high=high,
        bands=CATALOGUE[metric].bands if metric in CATALOGUE else (),
        date_from=date_from or (min(days) if days else None),
        date_to=date_to or (max(days) if days else None),
        join_days=limit,
        points=tuple(points),
        gaps=gaps_between(points, limit),
        sessions=marks,
        baseline=baseline,
    )


def _ranged(
    metric: str, patient_id: uuid.UUID, date_from: date | None, date_to: date | None
) -> tuple[Select[Any], type[MoodEntry] | type[Assessment]]:
    model: type[MoodEntry] | type[Assessment] = MoodEntry if metric in MOOD_METRICS else Assessment
    stmt = measurements(metric).where(model.patient_id == patient_id)
    if date_from is not None:
        stmt = stmt.where(model.local_date >= date_from)
    if date_to is not None:
        stmt = stmt.where(model.local_date <= date_to)
    return stmt, model


def _daily_points(
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    date_from: date | None,
    date_to: date | None,
    split: dict[date, tuple[int, datetime]],
) -> list[ChartPoint]:
    """Daily means; a session day's entries as a before and an after point."""
    days = series(
        db=db,
        patient_id=patient_id,
        metric=metric,
        bucket="day",
        date_from=date_from,
        date_to=date_to,
    )
    session_days = [d.start for d in days if d.start in split]
    sides: dict[tuple[date, Side], list[float]] = {}
    if session_days:
        stmt, model = _ranged(metric, patient_id, date_from, date_to)
        rows = db.execute(stmt.where(model.local_date.in_(session_days))).all()
        for row in rows:
            side: Side = "before" if row.occurred_at < split[row.local_date][1] else "after"
            sides.setdefault((row.local_date, side), []).append(float(row.value))
    points = []
    for day in days:
        if day.start not in split:
            points.append(ChartPoint(day.start, float(day.mean), int(day.n)))
            continue
        number = split[day.start][0]
        for side in ("before", "after"):
            values = sides.get((day.start, side))
            if values:
                points.append(
                    ChartPoint(day.start, sum(values) / len(values), len(values), side, number)
                )
    return points


def _total_points(
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    date_from: date | None,
    date_to: date | None,
    split: dict[date, tuple[int, datetime]],
) -> list[ChartPoint]:
    """One point per questionnaire, in time order; on a session day, on its side."""
    stmt, _model = _ranged(metric, patient_id, date_from, date_to)
    inner = stmt.subquery()
    rows = db.execute(select(inner).order_by(inner.c.occurred_at, inner.c.value)).all()
    keyed = []
    for row in rows:
        side: Side | None = None
        number = None
        if row.local_date in split:
            number, start = split[row.local_date]
            side = "before" if row.occurred_at < start else "after"
        rank = {"before": 0, None: 1, "after": 2}[side]
        point = ChartPoint(row.local_date, float(row.value), 1, side, number)
        keyed.append(((row.local_date, rank, row.occurred_at), point))
    # By local date first (an entry's offset decides its date), then side, then time.
    keyed.sort(key=lambda pair: pair[0])
    return [point for _key, point in keyed]
