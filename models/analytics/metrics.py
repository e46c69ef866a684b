"""What is measured: the metrics, which way is better for each, and their measurements as SQL
(analytics.md "Measurements"). The other analytics modules build on these."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from sqlalchemy import Float, Select, bindparam, cast, select

from models.assessments import Assessment
from models.mood import MoodEntry

Direction = Literal["up", "down"]
MOOD_METRICS: dict[str, Direction] = {
    "mood": "up",
    "anxiety": "down",
    "energy": "up",
    "sleep_hours": "up",
}
INSTRUMENT_METRICS: dict[str, Direction] = {
    "phq9": "down",
    "gad7": "down",
    "qids_sr16": "down",
    "madrs": "down",
    "cadss": "down",
}
METRICS: dict[str, Direction] = {**MOOD_METRICS, **INSTRUMENT_METRICS}


def measurements(metric: str) -> Select[Any]:
    """Every live measurement of ``metric``: patient_id, occurred_at, local_date, value,
    session_id, phase (analytics.md "Measurements")."""
    if metric in MOOD_METRICS:
        value = getattr(MoodEntry, metric)
        return select(
            MoodEntry.patient_id.label("patient_id"),
            MoodEntry.occurred_at.label("occurred_at"),
            MoodEntry.local_date.label("local_date"),
            cast(value, Float).label("value"),
            MoodEntry.session_id.label("session_id"),
            MoodEntry.phase.label("phase"),
        ).where(MoodEntry.deleted_at.is_(None), value.is_not(None))
    if metric in INSTRUMENT_METRICS:
        return select(
            Assessment.patient_id.label("patient_id"),
            Assessment.occurred_at.label("occurred_at"),
            Assessment.local_date.label("local_date"),
            cast(Assessment.total, Float).label("value"),
            Assessment.session_id.label("session_id"),
            Assessment.phase.label("phase"),
        ).where(Assessment.deleted_at.is_(None), Assessment.instrument == metric)
    raise ValueError(f"unknown metric {metric!r}")


def improvement_of(metric: str, change: float | None) -> float | None:
    """Change signed so that positive is better."""
    if change is None:
        return None
    # `+ 0.0` turns the -0.0 that negating an unchanged score gives into 0.0: a report
    # reading "improvement": -0.0 would make a reader look for a worsening that is not there.
    return (change if METRICS[metric] == "up" else -change) + 0.0


def is_better_or_equal_failure(metric: str, value: float, pre: float) -> bool:
    """True when ``value`` is no better than ``pre`` (ends a session's effect)."""
    return value <= pre if METRICS[metric] == "up" else value >= pre


def range_params(
    patient_id: uuid.UUID, date_from: date | None, date_to: date | None
) -> dict[str, Any]:
    """The bound parameters of a statement built on ``measured`` for one patient and range."""
    return {"patient_id": patient_id, "date_from": date_from, "date_to": date_to}


def measured(metric: str, *, bounded_from: bool = False, bounded_to: bool = False) -> Any:
    """The patient's measurements of ``metric`` as a subquery, with bound parameters
    ``patient_id`` and, when bounded, ``date_from``/``date_to`` (local dates, inclusive)."""
    model = MoodEntry if metric in MOOD_METRICS else Assessment
    stmt = measurements(metric).where(model.patient_id == bindparam("patient_id"))
    if bounded_from:
        stmt = stmt.where(model.local_date >= bindparam("date_from"))
    if bounded_to:
        stmt = stmt.where(model.local_date <= bindparam("date_to"))
    return stmt.subquery()
