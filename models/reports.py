"""The clinician report, its per-measurement rows, the chart's data and the patient's export.

Every figure comes from models.analytics (analytics.md); this module only gathers them.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import CompoundSelect, Integer, cast, func, literal, select, union_all
from sqlalchemy.orm import Session

from models.accounts import Role, User
from models.alerts import Alert
from models.analytics import (
    INSTRUMENT_METRICS,
    METRICS,
    MOOD_METRICS,
    Bucket,
    Summary,
    completed_sessions,
    course_summary,
    measurements,
    series,
    slope_per_week,
    summary,
)
from models.assessments import Assessment
from models.care import CareLink
from models.errors import NotFound
from models.instruments import CATALOGUE, Band
from models.mood import MoodEntry, MoodEntryVersion
from models.outcomes import RuleSet
from models.sessions import Observation, SessionStatus, TreatmentSession, session_numbers

# The metrics the JSON report summarises (issue 5): the self-report ones a clinician reads.
REPORT_METRICS = ("mood", "anxiety", "energy", "sleep_hours", "phq9", "gad7", "qids_sr16")
# Every metric, in the order the CSV lists the measurements of one instant.
ROW_METRICS = tuple(METRICS)
CSV_HEADER = (
    "local_date",
    "occurred_at",
    "utc_offset",
    "metric",
    "value",
    "session_number",
    "phase",
)
# Rows per round trip when streaming: small enough to keep memory flat, large enough to be
# cheap (PostgreSQL reads them through a server-side cursor).
ROW_BATCH = 500
# The y range a chart draws for each metric: the field range (mood.py) or the total range.
SCALE_RANGES: dict[str, tuple[float, float]] = {
    "mood": (0, 10),
    "anxiety": (0, 10),
    "energy": (0, 10),
    "sleep_hours": (0, 24),
    **{code: (CATALOGUE[code].total_min, CATALOGUE[code].total_max) for code in INSTRUMENT_METRICS},
}


def get_patient(*, db: Session, patient_id: uuid.UUID) -> User:
    """The patient's account, else NotFound."""
    user = db.get(User, patient_id)
    if user is None or user.role != Role.patient:
        raise NotFound("No such patient.")
    return user


def local_start_date(session: TreatmentSession) -> date:
    """The local date a session started on, in the offset it was recorded with."""
    return (session.started_at + timedelta(minutes=session.utc_offset_minutes)).date()


def _in_range(day: date, date_from: date | None, date_to: date | None) -> bool:
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


# ---------------------------------------------------------------- course


# ---------------------------------------------------------------- JSON report


@dataclass(frozen=True)
class MetricTrend:
    """One metric over the report's range: its daily series in brief and its summary."""

    metric: str
    direction: str
    days_with_data: int
    measurements: int
    first_date: date | None
    last_date: date | None
    mean: float | None
    slope_per_week: float | None
    summary: Summary


def metric_trend(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    rules: RuleSet,
    date_from: date | None,
    date_to: date | None,
) -> MetricTrend:
    """A metric's daily series condensed, with the trend summary over the same range."""
    days = series(
        db=db,
        patient_id=patient_id,
        metric=metric,
        bucket="day",
        date_from=date_from,
        date_to=date_to,
    )
    n = sum(b.n for b in days)
    return MetricTrend(
        metric=metric,
        direction=METRICS[metric],
        days_with_data=len(days),
        measurements=n,
        first_date=days[0].start if days else None,
        last_date=days[-1].start if days else None,
        # The mean of all measurements in range (not of the daily means).
        mean=sum(b.mean * b.n for b in days) / n if n else None,
        slope_per_week=slope_per_week(days),
        summary=summary(
            db=db,
            patient_id=patient_id,
            metric=metric,
            rules=rules,
            date_from=date_from,
            date_to=date_to,
        ),
    )


@dataclass(frozen=True)
class Counts:
    """How many records of each kind the report's range holds."""

    mood_entries: int
    assessments: dict[str, int]
    sessions_completed: int
    measurements: int


def counts(
    *,
    db: Session,
    patient_id: uuid.UUID,
    date_from: date | None,
    date_to: date | None,
    sessions: Sequence[TreatmentSession],
) -> Counts:
    """Live mood entries, assessments by instrument, completed sessions and measurements."""
    entries = select(func.count()).where(
        MoodEntry.patient_id == patient_id, MoodEntry.deleted_at.is_(None)
    )
    forms = select(Assessment.instrument, func.count()).where(
        Assessment.patient_id == patient_id, Assessment.deleted_at.is_(None)
    )
    if date_from is not None:
        entries = entries.where(MoodEntry.local_date >= date_from)
        forms = forms.where(Assessment.local_date >= date_from)
    if date_to is not None:
        entries = entries.where(MoodEntry.local_date <= date_to)
        forms = forms.where(Assessment.local_date <= date_to)
    by_instrument = {code: 0 for code in INSTRUMENT_METRICS}
    for code, n in db.execute(forms.group_by(Assessment.instrument)).all():
        by_instrument[code] = int(n)
    rows = db.scalar(
        select(func.count()).select_from(
            _measurement_rows(patient_id, date_from, date_to).subquery()
        )
    )
    return Counts(
        mood_entries=int(db.scalar(entries) or 0),
        assessments=by_instrument,
        sessions_completed=sum(
            1 for s in sessions if _in_range(local_start_date(s), date_from, date_to)
        ),
        measurements=int(rows or 0),
    )


def report(
    *,
    db: Session,
    patient_id: uuid.UUID,
    rules: RuleSet,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """The clinician report: course summary, trend per report metric, and counts."""
    course = course_summary(db=db, patient_id=patient_id, rules=rules)
    trends = [
        metric_trend(
            db=db,
            patient_id=patient_id,
            metric=metric,
            rules=rules,
            date_from=date_from,
            date_to=date_to,
        )
        for metric in REPORT_METRICS
    ]
    return {
        "course": course,
        "trends": trends,
        "counts": counts(
            db=db,
            patient_id=patient_id,
            date_from=date_from,
            date_to=date_to,
            sessions=completed_sessions(db=db, patient_id=patient_id),
        ),
    }


# ---------------------------------------------------------------- measurement rows


@dataclass(frozen=True)
class MeasurementRow:
    """One measurement as the CSV lists it."""

    local_date: date
    occurred_at: datetime
    utc_offset_minutes: int
    metric: str
    value: float
    session_number: int | None
    phase: str | None


def _measurement_rows(
    patient_id: uuid.UUID, date_from: date | None, date_to: date | None
) -> CompoundSelect[Any]:
    """Every measurement of every metric in one UNION ALL, with offset and a metric rank."""
    parts = []
    for rank, metric in enumerate(ROW_METRICS):
        model = MoodEntry if metric in MOOD_METRICS else Assessment
        # CAST, so PostgreSQL knows the type of the bound literal inside the UNION.
        stmt = measurements(metric).add_columns(
            model.utc_offset_minutes.label("utc_offset_minutes"),
            cast(literal(rank), Integer).label("metric_rank"),
            model.id.label("record_id"),
        )
        stmt = stmt.where(model.patient_id == patient_id)
        if date_from is not None:
            stmt = stmt.where(model.local_date >= date_from)
        if date_to is not None:
            stmt = stmt.where(model.local_date <= date_to)
        parts.append(stmt)
    return union_all(*parts)


def measurement_rows(
    *,
    db: Session,
    patient_id: uuid.UUID,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Iterator[MeasurementRow]:
    """Every measurement, oldest first, read from SQL in batches as the caller consumes them.

    A row's session number is that of the last completed session started at or before it
    (the session whose span contains it); None before the first.
    """
    course = completed_sessions(db=db, patient_id=patient_id)
    starts = [s.started_at for s in course]
    rows = _measurement_rows(patient_id, date_from, date_to).subquery()
    stmt = select(rows).order_by(rows.c.occurred_at, rows.c.metric_rank, rows.c.record_id)
    # yield_per streams (a server-side cursor on PostgreSQL): memory stays flat however long.
    result = db.execute(stmt.execution_options(yield_per=ROW_BATCH))
    for row in result:
        index = bisect_right(starts, row.occurred_at)
        yield MeasurementRow(
            local_date=row.local_date,
            occurred_at=row.occurred_at,
            utc_offset_minutes=row.utc_offset_minutes,
            metric=ROW_METRICS[row.metric_rank],
            value=float(row.value),
            session_number=index if index > 0 else None,
            phase=row.phase,
        )


# ---------------------------------------------------------------- chart


@dataclass(frozen=True)
class ChartData:
    """What the trend chart draws: daily means, completed sessions and the y scale."""

    metric: str
    direction: str
    low: float
    high: float
    bands: tuple[Band, ...]
    days: list[Bucket]
    sessions: list[tuple[int, date]]
    date_from: date | None
    date_to: date | None


def chart_data(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> ChartData:
    """The daily series of a metric and the completed sessions within the same range."""
    days = series(
        db=db,
        patient_id=patient_id,
        metric=metric,
        bucket="day",
        date_from=date_from,
        date_to=date_to,
    )
    course = completed_sessions(db=db, patient_id=patient_id)
    marks = [
        (number, local_start_date(s))
        for number, s in enumerate(course, start=1)
        if _in_range(local_start_date(s), date_from, date_to)
    ]
    low, high = SCALE_RANGES[metric]
    bands = CATALOGUE[metric].bands if metric in CATALOGUE else ()
    return ChartData(metric, METRICS[metric], low, high, bands, days, marks, date_from, date_to)


# ---------------------------------------------------------------- FHIR records and export


@dataclass
class Records:
    """A patient's live records, loaded for a FHIR bundle or the export."""

    patient: User
    mood_entries: list[MoodEntry]
    assessments: list[Assessment]
    sessions: list[TreatmentSession]
    session_numbers: dict[uuid.UUID, int]
    observations: list[Observation] = field(default_factory=list)
    mood_entry_versions: list[MoodEntryVersion] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    care_links: list[tuple[CareLink, User]] = field(default_factory=list)

    @property
    def completed_sessions(self) -> list[TreatmentSession]:
        """The sessions that count (completed), by start."""
        return [s for s in self.sessions if s.status == SessionStatus.completed]


def fhir_records(
    *,
    db: Session,
    patient_id: uuid.UUID,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Records:
    """Live mood entries, assessments and sessions within a local-date range, oldest first."""
    entries = select(MoodEntry).where(
        MoodEntry.patient_id == patient_id, MoodEntry.deleted_at.is_(None)
    )
    forms = select(Assessment).where(
        Assessment.patient_id == patient_id, Assessment.deleted_at.is_(None)
    )
    if date_from is not None:
        entries = entries.where(MoodEntry.local_date >= date_from)
        forms = forms.where(Assessment.local_date >= date_from)
    if date_to is not None:
        entries = entries.where(MoodEntry.local_date <= date_to)
        forms = forms.where(Assessment.local_date <= date_to)
    numbers = {row[0]: row[1] for row in db.execute(session_numbers(patient_id))}
    sessions = [
        s
        for s in db.scalars(
            select(TreatmentSession)
            .where(TreatmentSession.patient_id == patient_id, TreatmentSession.deleted_at.is_(None))
            .order_by(TreatmentSession.started_at, TreatmentSession.id)
        )
        if _in_range(local_start_date(s), date_from, date_to)
    ]
    return Records(
        patient=get_patient(db=db, patient_id=patient_id),
        mood_entries=list(db.scalars(entries.order_by(MoodEntry.occurred_at, MoodEntry.id))),
        assessments=list(db.scalars(forms.order_by(Assessment.occurred_at, Assessment.id))),
        sessions=sessions,
        session_numbers={k: int(v) for k, v in numbers.items()},
    )


def export_records(*, db: Session, patient_id: uuid.UUID) -> Records:
    """Every live record of the patient, with entry history, observations, alerts and links."""
    records = fhir_records(db=db, patient_id=patient_id)
    entry_ids = select(MoodEntry.id).where(
        MoodEntry.patient_id == patient_id, MoodEntry.deleted_at.is_(None)
    )
    records.mood_entry_versions = list(
        db.scalars(
            select(MoodEntryVersion)
            .where(MoodEntryVersion.entry_id.in_(entry_ids))
            .order_by(MoodEntryVersion.entry_id, MoodEntryVersion.version)
        )
    )
    session_ids = [s.id for s in records.sessions]
    if session_ids:
        records.observations = list(
            db.scalars(
                select(Observation)
                .where(Observation.session_id.in_(session_ids))
                .order_by(Observation.observed_at, Observation.id)
            )
        )
    records.alerts = list(
        db.scalars(
            select(Alert).where(Alert.patient_id == patient_id).order_by(Alert.created_at, Alert.id)
        )
    )
    records.care_links = [
        (link, clinician)
        for link, clinician in db.execute(
            select(CareLink, User)
            .join(User, User.id == CareLink.clinician_id)
            .where(CareLink.patient_id == patient_id)
            .order_by(CareLink.created_at, CareLink.id)
        )
    ]
    return records
