"""The clinician report, its per-measurement rows and the patient's export.

Every figure comes from models.analytics (analytics.md) and models.charts; this module only
gathers them, once: the JSON report and the HTML page are two prints of one Report.
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
    BASELINE_WINDOW,
    CURRENT_WINDOW,
    EFFECT_WINDOWS,
    INSTRUMENT_METRICS,
    METRICS,
    MOOD_METRICS,
    PRE_FALLBACK_WINDOW,
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
from models.charts import USUAL_INTERVAL_DAYS, Chart, build_chart, join_days
from models.cohort import ADHERENCE_DAYS, local_today
from models.errors import NotFound
from models.instruments import CATALOGUE, SELF_HARM_FLAG
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
# The report's mood chart covers the last 12 weeks of its period, day by day: wide enough
# to show a course of sessions, narrow enough that a session's before and after marks stay
# apart on a printed page. The PHQ-9 chart and the summaries cover the whole period.
MOOD_CHART_DAYS = 84
# The charts the report draws, in the order a clinician reads them.
REPORT_CHARTS = ("phq9", "mood")


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


@dataclass(frozen=True)
class Period:
    """The local dates a report covers: ``from``/``to`` when asked for, else from the first
    record to the patient's local today."""

    date_from: date
    date_to: date


@dataclass(frozen=True)
class QuestionnaireRow:
    """One completed questionnaire as the report's table lists it."""

    id: uuid.UUID
    instrument: str
    occurred_at: datetime
    utc_offset_minutes: int
    local_date: date
    total: int
    band: str | None
    # Whether the safety item (PHQ-9 item 9, QIDS-SR16 item 12) was answered >= 1; None for
    # instruments without one. False is "not positive", never "safe".
    self_harm_item_positive: bool | None
    session_number: int | None
    phase: str | None


@dataclass(frozen=True)
class Adherence:
    """Days with at least one mood entry among the last ``days`` local dates (analytics.md)."""

    days: int
    days_with_entries: int
    fraction: float
    date_from: date
    date_to: date


@dataclass(frozen=True)
class EffectWindowRule:
    """An effect window after a session's start s: (s + after_hours, s + until_hours]."""

    name: str
    after_hours: float
    until_hours: float


@dataclass(frozen=True)
class RemissionRule:
    """Remission: the current value ``operator`` ``cutoff`` on one instrument."""

    instrument: str
    operator: str
    cutoff: float


@dataclass(frozen=True)
class ReliableImprovementRule:
    """Reliable improvement: a drop of at least ``drop`` points on one instrument."""

    instrument: str
    drop: int


@dataclass(frozen=True)
class ChartInterval:
    """How often a charted metric is usually measured, and the longest stretch a line joins."""

    metric: str
    usual_interval_days: int
    join_days: int


@dataclass(frozen=True)
class Definitions:
    """The rules and windows every figure of the report was computed with."""

    ruleset_version: str
    baseline_days: int
    current_days: int
    pre_fallback_hours: int
    effect_windows: tuple[EffectWindowRule, ...]
    response_fraction: float
    remission: tuple[RemissionRule, ...]
    reliable_improvement: tuple[ReliableImprovementRule, ...]
    adherence_days: int
    mood_chart_days: int
    chart_intervals: tuple[ChartInterval, ...]


@dataclass(frozen=True)
class Report:
    """The clinician report: one computed object for the JSON, and the page built from it."""

    course: dict[str, Any]
    trends: list[MetricTrend]
    counts: Counts
    period: Period
    questionnaires: list[QuestionnaireRow]
    adherence: Adherence
    open_alerts: int | None
    charts: list[Chart]
    definitions: Definitions


def report(
    *,
    db: Session,
    patient: User,
    rules: RuleSet,
    now: datetime,
    date_from: date | None = None,
    date_to: date | None = None,
    include_alerts: bool = True,
) -> Report:
    """The clinician report: course, trends, counts, questionnaires, adherence, open alerts
    (None unless ``include_alerts``: alerts are the care team's), charts and definitions."""
    sessions = completed_sessions(db=db, patient_id=patient.id)
    course = course_summary(db=db, patient_id=patient.id, rules=rules, sessions=sessions)
    trends = [
        metric_trend(
            db=db,
            patient_id=patient.id,
            metric=metric,
            rules=rules,
            date_from=date_from,
            date_to=date_to,
        )
        for metric in REPORT_METRICS
    ]
    forms = questionnaire_rows(
        db=db, patient_id=patient.id, sessions=sessions, date_from=date_from, date_to=date_to
    )
    today = local_today(patient.timezone, now)
    period = report_period(
        date_from=date_from,
        date_to=date_to,
        today=today,
        dates=[
            *(d for t in trends for d in (t.first_date, t.last_date) if d is not None),
            *(form.local_date for form in forms),
            *(row["local_date"] for row in course["sessions"]),
        ],
    )
    baselines = {t.metric: t.summary.baseline for t in trends}
    return Report(
        course=course,
        trends=trends,
        counts=counts(
            db=db, patient_id=patient.id, date_from=date_from, date_to=date_to, sessions=sessions
        ),
        period=period,
        questionnaires=forms,
        adherence=adherence(db=db, patient_id=patient.id, today=today),
        open_alerts=open_alerts(db=db, patient_id=patient.id) if include_alerts else None,
        charts=report_charts(
            db=db, patient_id=patient.id, period=period, baselines=baselines, sessions=sessions
        ),
        definitions=definitions(rules),
    )


def report_period(
    *, date_from: date | None, date_to: date | None, today: date, dates: Sequence[date]
) -> Period:
    """``from``/``to`` as asked; an open start is the first record's local date, an open end
    the patient's today (so a silence up to today shows). ``dates``: the records' dates."""
    inside = [d for d in dates if _in_range(d, date_from, date_to)]
    end = date_to or max([today, *inside])
    start = date_from or min(inside, default=end)
    return Period(start, max(start, end))


def report_charts(
    *,
    db: Session,
    patient_id: uuid.UUID,
    period: Period,
    baselines: dict[str, float | None],
    sessions: Sequence[TreatmentSession],
) -> list[Chart]:
    """The PHQ-9 chart over the report's period and the mood chart over its last weeks."""
    mood_from = max(period.date_from, period.date_to - timedelta(days=MOOD_CHART_DAYS - 1))
    frames = {"phq9": period.date_from, "mood": mood_from}
    return [
        build_chart(
            db=db,
            patient_id=patient_id,
            metric=metric,
            course=sessions,
            baseline=baselines[metric],
            date_from=frames[metric],
            date_to=period.date_to,
        )
        for metric in REPORT_CHARTS
    ]


def questionnaire_rows(
    *,
    db: Session,
    patient_id: uuid.UUID,
    sessions: Sequence[TreatmentSession],
    date_from: date | None,
    date_to: date | None,
) -> list[QuestionnaireRow]:
    """The live questionnaires within the local-date range, oldest first."""
    stmt = select(Assessment).where(
        Assessment.patient_id == patient_id, Assessment.deleted_at.is_(None)
    )
    if date_from is not None:
        stmt = stmt.where(Assessment.local_date >= date_from)
    if date_to is not None:
        stmt = stmt.where(Assessment.local_date <= date_to)
    starts = [s.started_at for s in sessions]
    rows = []
    for form in db.scalars(stmt.order_by(Assessment.occurred_at, Assessment.id)):
        index = bisect_right(starts, form.occurred_at)
        has_safety_item = CATALOGUE[form.instrument].safety_item is not None
        rows.append(
            QuestionnaireRow(
                id=form.id,
                instrument=form.instrument,
                occurred_at=form.occurred_at,
                utc_offset_minutes=form.utc_offset_minutes,
                local_date=form.local_date,
                total=form.total,
                band=form.band,
                self_harm_item_positive=(SELF_HARM_FLAG in (form.flags or []))
                if has_safety_item
                else None,
                session_number=index if index > 0 else None,
                phase=form.phase,
            )
        )
    return rows


def adherence(*, db: Session, patient_id: uuid.UUID, today: date) -> Adherence:
    """Days with a mood entry among the last ADHERENCE_DAYS local dates ending today."""
    first = today - timedelta(days=ADHERENCE_DAYS - 1)
    days = db.scalar(
        select(func.count(func.distinct(MoodEntry.local_date))).where(
            MoodEntry.patient_id == patient_id,
            MoodEntry.deleted_at.is_(None),
            MoodEntry.local_date >= first,
            MoodEntry.local_date <= today,
        )
    )
    n = int(days or 0)
    return Adherence(ADHERENCE_DAYS, n, n / ADHERENCE_DAYS, first, today)


def open_alerts(*, db: Session, patient_id: uuid.UUID) -> int:
    """Alerts of the patient no clinician has acknowledged yet."""
    found = db.scalar(
        select(func.count()).where(Alert.patient_id == patient_id, Alert.acknowledged_at.is_(None))
    )
    return int(found or 0)


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


def definitions(rules: RuleSet) -> Definitions:
    """The definitions behind the report's figures (analytics.md, the rule set, the charts)."""
    return Definitions(
        ruleset_version=rules.version,
        baseline_days=BASELINE_WINDOW.days,
        current_days=CURRENT_WINDOW.days,
        pre_fallback_hours=int(_hours(PRE_FALLBACK_WINDOW)),
        effect_windows=tuple(
            EffectWindowRule(name, _hours(after), _hours(until))
            for name, after, until in EFFECT_WINDOWS
        ),
        response_fraction=rules.response_fraction,
        remission=tuple(
            RemissionRule(code, op, float(cut)) for code, (op, cut) in rules.remission.items()
        ),
        reliable_improvement=tuple(
            ReliableImprovementRule(code, drop)
            for code, drop in rules.reliable_improvement_drop.items()
        ),
        adherence_days=ADHERENCE_DAYS,
        mood_chart_days=MOOD_CHART_DAYS,
        chart_intervals=tuple(
            ChartInterval(metric, USUAL_INTERVAL_DAYS[metric], join_days(metric))
            for metric in REPORT_CHARTS
        ),
    )


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

    A row's session number is that of the session it belongs to: for a check-in (``phase``
    pre or post) its own session, so a pre check-in carries the number of the session it
    precedes, not the previous one's (None when its session is not a completed one); for
    any other measurement the last completed session started at or before it (the session
    whose span contains it), None before the first.
    """
    course = completed_sessions(db=db, patient_id=patient_id)
    starts = [s.started_at for s in course]
    numbers = {s.id: number for number, s in enumerate(course, start=1)}
    rows = _measurement_rows(patient_id, date_from, date_to).subquery()
    stmt = select(rows).order_by(rows.c.occurred_at, rows.c.metric_rank, rows.c.record_id)
    # yield_per streams (a server-side cursor on PostgreSQL): memory stays flat however long.
    result = db.execute(stmt.execution_options(yield_per=ROW_BATCH))
    for row in result:
        if row.phase is not None:
            number = numbers.get(row.session_id)
        else:
            number = bisect_right(starts, row.occurred_at) or None
        yield MeasurementRow(
            local_date=row.local_date,
            occurred_at=row.occurred_at,
            utc_offset_minutes=row.utc_offset_minutes,
            metric=ROW_METRICS[row.metric_rank],
            value=float(row.value),
            session_number=number,
            phase=row.phase,
        )


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
