"""Trend analytics, exactly as ../shared/analytics.md defines them.

SQL does the aggregating (grouped by the patient's local date, bounded by the requested
range); Python only walks the small per-day or per-window results that come back.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    Float,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from models.assessments import Assessment
from models.instruments import band_of
from models.mood import MoodEntry
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession
from models.sqltime import dialect_of, month_start, shifted, week_start

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
BUCKETS = ("day", "week", "month")

SIX_DAYS = timedelta(days=6)
BASELINE_WINDOW = timedelta(days=14)
CURRENT_WINDOW = timedelta(days=7)
PRE_FALLBACK_WINDOW = timedelta(hours=24)
# Effect windows after a session's start s: (name, after, up to and including).
EFFECT_WINDOWS: tuple[tuple[str, timedelta, timedelta], ...] = (
    ("acute", timedelta(0), timedelta(hours=4)),
    ("day1", timedelta(hours=12), timedelta(hours=36)),
    ("day3", timedelta(hours=60), timedelta(hours=84)),
    ("day7", timedelta(days=6), timedelta(days=8)),
)


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
    return change if METRICS[metric] == "up" else -change


def is_better_or_equal_failure(metric: str, value: float, pre: float) -> bool:
    """True when ``value`` is no better than ``pre`` (ends a session's effect)."""
    return value <= pre if METRICS[metric] == "up" else value >= pre


# ---------------------------------------------------------------- series


class Bucket(NamedTuple):
    """One bucket of a series: its first day and the statistics of its measurements.

    A named tuple: a two-year daily series has 730 of them, read field by field three
    times over."""

    start: date
    mean: float
    n: int
    min: float
    max: float


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
    rows = db.execute(statement, _params(patient_id, date_from, date_to)).all()
    return [Bucket._make(row) for row in rows]


def _params(patient_id: uuid.UUID, date_from: date | None, date_to: date | None) -> dict[str, Any]:
    return {"patient_id": patient_id, "date_from": date_from, "date_to": date_to}


def _measured(metric: str, *, bounded_from: bool = False, bounded_to: bool = False) -> Any:
    """The patient's measurements of ``metric`` as a subquery, with bound parameters
    ``patient_id`` and, when bounded, ``date_from``/``date_to`` (local dates, inclusive)."""
    model = MoodEntry if metric in MOOD_METRICS else Assessment
    stmt = measurements(metric).where(model.patient_id == bindparam("patient_id"))
    if bounded_from:
        stmt = stmt.where(model.local_date >= bindparam("date_from"))
    if bounded_to:
        stmt = stmt.where(model.local_date <= bindparam("date_to"))
    return stmt.subquery()


def _patient(metric: str, patient_id: uuid.UUID) -> ColumnElement[bool]:
    model = MoodEntry if metric in MOOD_METRICS else Assessment
    return model.patient_id == patient_id


# Statements are built once per shape and reused with new parameters: building a
# SQLAlchemy statement costs more than the database takes to run one of these.
@functools.cache
def _series_statement(
    metric: str, bucket: str, dialect: str, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    m = _measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
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


def rolling7(days: Sequence[Bucket]) -> list[tuple[date, float]]:
    """For each day d with data: the mean of the daily values of the days in [d-6, d]."""
    starts = [day.start for day in days]
    means = [day.mean for day in days]
    out: list[tuple[date, float]] = []
    first = 0  # oldest day still inside the window of the current day
    for i, start in enumerate(starts):
        while starts[first] < start - SIX_DAYS:
            first += 1
        # Summed afresh, not as a running total: no rounding drift over two years of days.
        out.append((start, sum(means[first : i + 1]) / (i + 1 - first)))
    return out


def slope_per_week(days: Sequence[Bucket]) -> float | None:
    """Least-squares slope of daily values against the day number, times 7."""
    if len(days) < 2:
        return None
    xs = [b.start.toordinal() for b in days]
    ys = [b.mean for b in days]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return 7 * covariance / spread


# ---------------------------------------------------------------- baseline and current


@dataclass(frozen=True)
class Current:
    """The recent level: mean over (L - 7 days, L], and the latest single value."""

    value: float | None
    latest_value: float | None
    latest_at: datetime | None


def levels(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> tuple[float | None, Current]:
    """Baseline and current level (analytics.md "Baseline and current") in one statement.

    Each rule is a scalar subquery over the patient's indexes; the database runs them all
    in one round trip, and only the rule that applies is used here. ``date_from``/``date_to``
    bound the current level, never the baseline (it is the pre-treatment level).
    """
    statement = _levels_statement(
        metric, dialect_of(db), date_from is not None, date_to is not None
    )
    row = db.execute(statement, _params(patient_id, date_from, date_to)).one()
    s1_at, s1_window_mean, s1_last, first_window_mean, last_at, last_value, current_mean = row
    if s1_at is not None:
        base = s1_window_mean if s1_window_mean is not None else s1_last
    else:
        base = first_window_mean
    now = (
        Current(None, None, None)
        if last_at is None
        else Current(float(current_mean), float(last_value), last_at)
    )
    return (None if base is None else float(base)), now


@functools.cache
def _levels_statement(
    metric: str, dialect: str, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    every = _measured(metric)
    ranged = _measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)

    def mean(m: Any, *where: ColumnElement[bool]) -> Any:
        return select(func.avg(m.c.value)).where(*where).scalar_subquery()

    s1 = (
        select(func.min(TreatmentSession.started_at))
        .where(
            TreatmentSession.patient_id == bindparam("patient_id"),
            TreatmentSession.deleted_at.is_(None),
            TreatmentSession.status == SessionStatus.completed,
        )
        .scalar_subquery()
    )
    first = select(func.min(every.c.occurred_at)).scalar_subquery()
    fortnight = int(BASELINE_WINDOW.total_seconds())
    week = int(CURRENT_WINDOW.total_seconds())
    last_before_s1 = (
        select(every.c.value)
        .where(every.c.occurred_at < s1)
        .order_by(every.c.occurred_at.desc(), every.c.value.desc())
        .limit(1)
        .scalar_subquery()
    )
    newest = ranged.c.occurred_at.desc(), ranged.c.value.desc()
    latest_at = select(ranged.c.occurred_at).order_by(*newest).limit(1).scalar_subquery()
    latest_value = select(ranged.c.value).order_by(*newest).limit(1).scalar_subquery()
    return select(
        s1,
        mean(
            every, every.c.occurred_at >= shifted(dialect, s1, -fortnight), every.c.occurred_at < s1
        ),
        last_before_s1,
        mean(
            every,
            every.c.occurred_at >= first,
            every.c.occurred_at < shifted(dialect, first, fortnight),
        ),
        latest_at,
        latest_value,
        mean(
            ranged,
            ranged.c.occurred_at > shifted(dialect, latest_at, -week),
            ranged.c.occurred_at <= latest_at,
        ),
    )


def baseline(*, db: Session, patient_id: uuid.UUID, metric: str) -> float | None:
    """Pre-treatment level (analytics.md "Baseline and current")."""
    return levels(db=db, patient_id=patient_id, metric=metric)[0]


def current(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Current:
    """Current level, within the requested local-date range when one is given."""
    return levels(
        db=db, patient_id=patient_id, metric=metric, date_from=date_from, date_to=date_to
    )[1]


@dataclass(frozen=True)
class Summary:
    """Baseline, current and the labels derived from them (null where inputs are missing)."""

    metric: str
    direction: Direction
    baseline: float | None
    current: float | None
    change: float | None
    percent_change: float | None
    improvement: float | None
    response: bool | None
    remission: bool | None
    reliable_improvement: bool | None
    band: str | None
    latest_value: float | None
    latest_at: datetime | None
    ruleset_version: str


def summarise(*, metric: str, base: float | None, now: Current, rules: RuleSet) -> Summary:
    """Derive change and labels from a baseline and a current value."""
    change = None if base is None or now.value is None else now.value - base
    percent = None if change is None or not base else 100 * change / base
    is_instrument = metric in INSTRUMENT_METRICS
    response = None
    if is_instrument and base is not None and base > 0 and now.value is not None:
        response = now.value <= rules.response_fraction * base
    remission = None
    if metric in rules.remission and now.value is not None:
        remission = rules.in_remission(metric, now.value)
    reliable = None
    if metric in rules.reliable_improvement_drop and change is not None:
        reliable = -change >= rules.reliable_improvement_drop[metric]
    band = None
    if is_instrument and now.latest_value is not None:
        found = band_of(metric, int(now.latest_value))
        band = found.code if found is not None else None
    return Summary(
        metric=metric,
        direction=METRICS[metric],
        baseline=base,
        current=now.value,
        change=change,
        percent_change=percent,
        improvement=improvement_of(metric, change),
        response=response,
        remission=remission,
        reliable_improvement=reliable,
        band=band,
        latest_value=now.latest_value,
        latest_at=now.latest_at,
        ruleset_version=rules.version,
    )


def summary(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    rules: RuleSet,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Summary:
    """The trend summary of one metric for one patient."""
    base, now = levels(
        db=db, patient_id=patient_id, metric=metric, date_from=date_from, date_to=date_to
    )
    return summarise(metric=metric, base=base, now=now, rules=rules)


# ---------------------------------------------------------------- session effect


@dataclass(frozen=True)
class Window:
    """One effect window: its mean, the change from pre and the improvement."""

    name: str
    start: datetime
    end: datetime
    value: float | None
    n: int
    delta: float | None
    improvement: float | None


@dataclass(frozen=True)
class Effect:
    """How much one session helped on one metric, and for how long."""

    session_id: uuid.UUID
    metric: str
    started_at: datetime
    span_end: datetime | None
    pre: float | None
    pre_source: str | None  # "linked" or "last_24h"
    windows: tuple[Window, ...]
    durability_days: int | None
    relapsed: bool | None


def completed_sessions(*, db: Session, patient_id: uuid.UUID) -> list[TreatmentSession]:
    """The patient's completed, live sessions by start time (the only ones that count)."""
    return list(
        db.scalars(
            select(TreatmentSession)
            .where(
                TreatmentSession.patient_id == patient_id,
                TreatmentSession.deleted_at.is_(None),
                TreatmentSession.status == SessionStatus.completed,
            )
            .order_by(TreatmentSession.started_at, TreatmentSession.id)
        )
    )


def effects(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    sessions: Sequence[TreatmentSession] | None = None,
) -> list[Effect]:
    """The effect of every completed session (or of ``sessions``, given in course order
    with their successors) in a fixed number of queries."""
    course = sessions if sessions is not None else completed_sessions(db=db, patient_id=patient_id)
    if not course:
        return []
    spans = [
        (s, course[i + 1].started_at if i + 1 < len(course) else None) for i, s in enumerate(course)
    ]
    base = measurements(metric).where(_patient(metric, patient_id))
    pres = _pre_values(db, base, metric, spans)
    windows = _window_values(db, base, spans)
    days = _daily_in_span(db, base, spans)
    out = []
    for index, (session, span_end) in enumerate(spans):
        pre, source = pres[index]
        rows = []
        for name, after, until in EFFECT_WINDOWS:
            value, n = windows.get((index, name), (None, 0))
            delta = None if value is None or pre is None else value - pre
            rows.append(
                Window(
                    name,
                    session.started_at + after,
                    session.started_at + until,
                    value,
                    n,
                    delta,
                    improvement_of(metric, delta),
                )
            )
        durability, relapsed = _durability(
            metric, pre, _local_date_of_start(session), days.get(index, [])
        )
        out.append(
            Effect(
                session.id,
                metric,
                session.started_at,
                span_end,
                pre,
                source,
                tuple(rows),
                durability,
                relapsed,
            )
        )
    return out


def pre_values(
    *, db: Session, patient_id: uuid.UUID, metric: str, sessions: Sequence[TreatmentSession]
) -> dict[uuid.UUID, float | None]:
    """Each session's pre value: linked ``pre`` check-ins, else the last in [s - 24 h, s)."""
    if not sessions:
        return {}
    base = measurements(metric).where(_patient(metric, patient_id))
    found = _pre_values(db, base, metric, [(s, None) for s in sessions])
    return {s.id: found[i][0] for i, s in enumerate(sessions)}


def _local_date_of_start(session: TreatmentSession) -> date:
    return (session.started_at + timedelta(minutes=session.utc_offset_minutes)).date()


def _in_span(m: Any, start: datetime, span_end: datetime | None) -> ColumnElement[bool]:
    condition = m.c.occurred_at > start
    if span_end is not None:
        condition = and_(condition, m.c.occurred_at < span_end)
    return condition


def _pre_values(
    db: Session,
    base: Select[Any],
    metric: str,
    spans: Sequence[tuple[TreatmentSession, datetime | None]],
) -> dict[int, tuple[float | None, str | None]]:
    m = base.subquery()
    ids = [s.id for s, _ in spans]
    linked = dict(
        db.execute(
            select(m.c.session_id, func.avg(m.c.value))
            .where(m.c.session_id.in_(ids), m.c.phase == "pre")
            .group_by(m.c.session_id)
        ).all()
    )
    out: dict[int, tuple[float | None, str | None]] = {}
    missing = []
    for index, (session, _) in enumerate(spans):
        if session.id in linked:
            out[index] = (float(linked[session.id]), "linked")
        else:
            missing.append(index)
    if missing:
        # The last measurement in [s - 24 h, s) for each session without a linked pre value:
        # one query, ranking each session's candidates newest first.
        which = case(
            *[
                (
                    and_(
                        m.c.occurred_at >= spans[i][0].started_at - PRE_FALLBACK_WINDOW,
                        m.c.occurred_at < spans[i][0].started_at,
                    ),
                    literal(i),
                )
                for i in missing
            ],
            else_=None,
        ).label("idx")
        tagged = select(which, m.c.value, m.c.occurred_at).subquery()
        ranked = (
            select(
                tagged.c.idx,
                tagged.c.value,
                func.row_number()
                .over(partition_by=tagged.c.idx, order_by=tagged.c.occurred_at.desc())
                .label("rank"),
            )
            .where(tagged.c.idx.is_not(None))
            .subquery()
        )
        found = dict(
            db.execute(select(ranked.c.idx, ranked.c.value).where(ranked.c.rank == 1)).all()
        )
        for i in missing:
            value = found.get(i)
            out[i] = (None, None) if value is None else (float(value), "last_24h")
    return out


def _window_values(
    db: Session,
    base: Select[Any],
    spans: Sequence[tuple[TreatmentSession, datetime | None]],
) -> dict[tuple[int, str], tuple[float | None, int]]:
    m = base.subquery()
    columns = []
    keys = []
    for index, (session, span_end) in enumerate(spans):
        for name, after, until in EFFECT_WINDOWS:
            inside = and_(
                _in_span(m, session.started_at, span_end),
                m.c.occurred_at > session.started_at + after,
                m.c.occurred_at <= session.started_at + until,
            )
            columns.append(func.avg(case((inside, m.c.value), else_=None)))
            columns.append(func.count(case((inside, 1), else_=None)))
            keys.append((index, name))
    first = spans[0][0].started_at
    last = spans[-1][0].started_at + EFFECT_WINDOWS[-1][2]
    row = db.execute(select(*columns).where(m.c.occurred_at > first, m.c.occurred_at <= last)).one()
    out = {}
    for position, key in enumerate(keys):
        mean, n = row[2 * position], row[2 * position + 1]
        out[key] = (None if mean is None else float(mean), int(n or 0))
    return out


def _daily_in_span(
    db: Session,
    base: Select[Any],
    spans: Sequence[tuple[TreatmentSession, datetime | None]],
) -> dict[int, list[tuple[date, float]]]:
    m = base.subquery()
    which = case(
        *[(_in_span(m, s.started_at, end), literal(i)) for i, (s, end) in enumerate(spans)],
        else_=None,
    ).label("idx")
    tagged = (
        select(which, m.c.local_date, m.c.value)
        .where(m.c.occurred_at > spans[0][0].started_at)
        .subquery()
    )
    rows = db.execute(
        select(tagged.c.idx, tagged.c.local_date, func.avg(tagged.c.value))
        .where(tagged.c.idx.is_not(None))
        .group_by(tagged.c.idx, tagged.c.local_date)
        .order_by(tagged.c.idx, tagged.c.local_date)
    ).all()
    out: dict[int, list[tuple[date, float]]] = {}
    for idx, day, mean in rows:
        out.setdefault(int(idx), []).append((day, float(mean)))
    return out


def _durability(
    metric: str, pre: float | None, d0: date, days: Sequence[tuple[date, float]]
) -> tuple[int | None, bool | None]:
    after = [(day, value) for day, value in days if day > d0]
    if pre is None or not after:
        return None, None
    for day, value in after:
        if is_better_or_equal_failure(metric, value, pre):
            return (day - d0).days, True
    return (after[-1][0] - d0).days, False


# ---------------------------------------------------------------- course


def course_summary(*, db: Session, patient_id: uuid.UUID, rules: RuleSet) -> dict[str, Any]:
    """The course summary (analytics.md "Course and cohort"), in CourseOut's shape."""
    course = completed_sessions(db=db, patient_id=patient_id)
    mood_effects = effects(db=db, patient_id=patient_id, metric="mood", sessions=course)
    rows = []
    for number, (session, effect) in enumerate(zip(course, mood_effects, strict=True), start=1):
        windows = {w.name: w.value for w in effect.windows}
        rows.append(
            {
                "number": number,
                "session_id": session.id,
                "started_at": session.started_at,
                "drug": session.drug.value,
                "route": session.route.value,
                "dose_mg": session.dose_mg,
                "dose_mg_per_kg": session.dose_mg_per_kg,
                "pre": effect.pre,
                "acute": windows["acute"],
                "day1": windows["day1"],
                "day7": windows["day7"],
                "durability_days": effect.durability_days,
                "relapsed": effect.relapsed,
            }
        )
    return {
        "sessions_completed": len(course),
        "phq9": summary(db=db, patient_id=patient_id, metric="phq9", rules=rules),
        "mood": summary(db=db, patient_id=patient_id, metric="mood", rules=rules),
        "sessions": rows,
    }
