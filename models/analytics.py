"""Trend analytics, exactly as ../shared/analytics.md defines them.

SQL does the aggregating (grouped by the patient's local date, bounded by the requested
range); Python only walks the small per-day or per-window results that come back.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
    union_all,
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
    minimal_important_change: bool | None
    relapse: bool | None
    band: str | None
    latest_value: float | None
    latest_at: datetime | None
    ruleset_version: str


def summarise(
    *,
    metric: str,
    base: float | None,
    now: Current,
    rules: RuleSet,
    relapse: bool | None = None,
) -> Summary:
    """Derive change and labels from a baseline and a current value."""
    change = None if base is None or now.value is None else now.value - base
    percent = None if change is None or not base else 100 * change / base
    is_instrument = metric in INSTRUMENT_METRICS
    response = rules.is_response(base, now.value) if is_instrument else None
    remission = None
    if metric in rules.remission and now.value is not None:
        remission = rules.in_remission(metric, now.value)
    band = None
    if is_instrument and now.latest_value is not None:
        found = band_of(metric, int(now.latest_value))
        band = found.code if found is not None else None
    improvement = improvement_of(metric, change)
    return Summary(
        metric=metric,
        direction=METRICS[metric],
        baseline=base,
        current=now.value,
        change=change,
        percent_change=percent,
        improvement=improvement,
        response=response,
        remission=remission,
        reliable_improvement=rules.is_reliable_improvement(metric, base, now.value),
        minimal_important_change=rules.is_minimal_important_improvement(metric, improvement),
        relapse=relapse,
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
    relapsed = relapse(
        db=db,
        patient_id=patient_id,
        metric=metric,
        rules=rules,
        date_from=date_from,
        date_to=date_to,
    )
    return summarise(metric=metric, base=base, now=now, rules=rules, relapse=relapsed)


def relapse(
    *,
    db: Session,
    patient_id: uuid.UUID,
    metric: str,
    rules: RuleSet,
    date_from: date | None = None,
    date_to: date | None = None,
) -> bool | None:
    """Relapse as STAR*D defines it (clinical.md §3): a measurement at or above the relapse
    level after the first measurement in remission, within the range. None for a metric
    without a relapse rule, or when no measurement was ever in remission."""
    if metric not in rules.relapse_min or metric not in rules.remission:
        return None
    operator, cutoff = rules.remission[metric]
    statement = _relapse_statement(metric, operator, date_from is not None, date_to is not None)
    params = {
        **_params(patient_id, date_from, date_to),
        "cutoff": cutoff,
        "level": rules.relapse_min[metric],
    }
    remitted_at, relapsed = db.execute(statement, params).one()
    return None if remitted_at is None else bool(relapsed)


@functools.cache
def _relapse_statement(
    metric: str, operator: str, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    remitted = _measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
    later = _measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
    in_remission = (
        remitted.c.value < bindparam("cutoff")
        if operator == "<"
        else remitted.c.value <= bindparam("cutoff")
    )
    first = select(func.min(remitted.c.occurred_at)).where(in_remission).scalar_subquery()
    relapsed = (
        select(func.count())
        .select_from(later)
        .where(later.c.value >= bindparam("level"), later.c.occurred_at > first)
        .scalar_subquery()
    )
    return select(first.label("remitted_at"), (relapsed > 0).label("relapsed"))


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
    effect_ended: bool | None


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
    pres = _pre_values(db, patient_id, metric, spans)
    windows = _window_values(db, patient_id, metric, spans)
    days = _daily_in_span(db, patient_id, metric, spans)
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
        durability, ended = _durability(
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
                ended,
            )
        )
    return out


def pre_values(
    *, db: Session, patient_id: uuid.UUID, metric: str, sessions: Sequence[TreatmentSession]
) -> dict[uuid.UUID, float | None]:
    """Each session's pre value: linked ``pre`` check-ins, else the last in [s - 24 h, s)."""
    if not sessions:
        return {}
    found = _pre_values(db, patient_id, metric, [(s, None) for s in sessions])
    return {s.id: found[i][0] for i, s in enumerate(sessions)}


def _local_date_of_start(session: TreatmentSession) -> date:
    return (session.started_at + timedelta(minutes=session.utc_offset_minutes)).date()


# The effect statements below depend on the number of sessions only; they are built once
# per (metric, database, count) with bound parameters and reused: building one with 12
# sessions' windows cost four times what running it does. The caches are bounded: the
# count is the patient's, and a long course must not keep a statement per session count.
EFFECT_STATEMENTS = 64
Spans = Sequence[tuple[TreatmentSession, datetime | None]]
# The last session's span is open-ended: its end is a date no measurement reaches.
OPEN_END = datetime(9999, 12, 31, tzinfo=UTC)


def _span_params(patient_id: uuid.UUID, spans: Spans) -> dict[str, Any]:
    params: dict[str, Any] = {"patient_id": patient_id}
    for i, (session, span_end) in enumerate(spans):
        params[f"start_{i}"] = session.started_at
        params[f"end_{i}"] = span_end if span_end is not None else OPEN_END
        for name, after, until in EFFECT_WINDOWS:
            params[f"{name}_from_{i}"] = session.started_at + after
            params[f"{name}_to_{i}"] = session.started_at + until
        params[f"pre_from_{i}"] = session.started_at - PRE_FALLBACK_WINDOW
    return params


def _in_span(m: Any, i: int) -> ColumnElement[bool]:
    """After the i-th session's start and before the next completed session's."""
    return and_(m.c.occurred_at > bindparam(f"start_{i}"), m.c.occurred_at < bindparam(f"end_{i}"))


def _pre_values(
    db: Session, patient_id: uuid.UUID, metric: str, spans: Spans
) -> dict[int, tuple[float | None, str | None]]:
    ids = [s.id for s, _ in spans]
    linked = dict(
        db.execute(
            _linked_pre_statement(metric, dialect_of(db)),
            {"patient_id": patient_id, "session_ids": ids},
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
        params = _span_params(patient_id, [spans[i] for i in missing])
        found = dict(
            db.execute(_fallback_pre_statement(metric, dialect_of(db), len(missing)), params).all()
        )
        for position, i in enumerate(missing):
            value = found.get(position)
            out[i] = (None, None) if value is None else (float(value), "last_24h")
    return out


@functools.cache
def _linked_pre_statement(metric: str, dialect: str) -> Select[Any]:
    m = _measured(metric)
    return (
        select(m.c.session_id, func.avg(m.c.value))
        .where(m.c.session_id.in_(bindparam("session_ids", expanding=True)), m.c.phase == "pre")
        .group_by(m.c.session_id)
    )


@functools.lru_cache(maxsize=EFFECT_STATEMENTS)
def _fallback_pre_statement(metric: str, dialect: str, count: int) -> Select[Any]:
    # The last measurement in [s - 24 h, s) for each session without a linked pre value,
    # one small indexed read per session in one statement. A measurement may be the pre
    # value of two sessions less than a day apart, so each session reads on its own.
    m = _measured(metric)
    newest = [
        select(literal(i).label("idx"), m.c.value.label("value"))
        .where(
            m.c.occurred_at >= bindparam(f"pre_from_{i}"),
            m.c.occurred_at < bindparam(f"start_{i}"),
        )
        .order_by(m.c.occurred_at.desc())
        .limit(1)
        .subquery()
        for i in range(count)
    ]
    parts = [select(one.c.idx, one.c.value) for one in newest]
    return parts[0] if count == 1 else union_all(*parts)  # type: ignore[return-value]


def _window_values(
    db: Session, patient_id: uuid.UUID, metric: str, spans: Spans
) -> dict[tuple[int, str], tuple[float | None, int]]:
    params = _span_params(patient_id, spans)
    params["first"] = spans[0][0].started_at
    params["last"] = spans[-1][0].started_at + EFFECT_WINDOWS[-1][2]
    row = db.execute(_windows_statement(metric, dialect_of(db), len(spans)), params).one()
    out = {}
    position = 0
    for index in range(len(spans)):
        for name, _after, _until in EFFECT_WINDOWS:
            mean, n = row[position], row[position + 1]
            out[(index, name)] = (None if mean is None else float(mean), int(n or 0))
            position += 2
    return out


@functools.lru_cache(maxsize=EFFECT_STATEMENTS)
def _windows_statement(metric: str, dialect: str, count: int) -> Select[Any]:
    m = _measured(metric)
    columns = []
    for i in range(count):
        for name, _after, _until in EFFECT_WINDOWS:
            inside = and_(
                _in_span(m, i),
                m.c.occurred_at > bindparam(f"{name}_from_{i}"),
                m.c.occurred_at <= bindparam(f"{name}_to_{i}"),
            )
            columns.append(func.avg(case((inside, m.c.value), else_=None)))
            columns.append(func.count(case((inside, 1), else_=None)))
    return select(*columns).where(
        m.c.occurred_at > bindparam("first"), m.c.occurred_at <= bindparam("last")
    )


def _daily_in_span(
    db: Session, patient_id: uuid.UUID, metric: str, spans: Spans
) -> dict[int, list[tuple[date, float]]]:
    statement = _daily_in_span_statement(metric, dialect_of(db), len(spans))
    rows = db.execute(statement, _span_params(patient_id, spans)).all()
    out: dict[int, list[tuple[date, float]]] = {}
    for idx, day, mean in rows:
        out.setdefault(int(idx), []).append((day, float(mean)))
    return out


@functools.lru_cache(maxsize=EFFECT_STATEMENTS)
def _daily_in_span_statement(metric: str, dialect: str, count: int) -> Select[Any]:
    m = _measured(metric)
    which = case(*[(_in_span(m, i), literal(i)) for i in range(count)], else_=None).label("idx")
    tagged = (
        select(which, m.c.local_date, m.c.value)
        .where(m.c.occurred_at > bindparam("start_0"))
        .subquery()
    )
    return (
        select(tagged.c.idx, tagged.c.local_date, func.avg(tagged.c.value))
        .where(tagged.c.idx.is_not(None))
        .group_by(tagged.c.idx, tagged.c.local_date)
        .order_by(tagged.c.idx, tagged.c.local_date)
    )


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


def course_summary(
    *,
    db: Session,
    patient_id: uuid.UUID,
    rules: RuleSet,
    sessions: Sequence[TreatmentSession] | None = None,
) -> dict[str, Any]:
    """The course summary (analytics.md "Course and cohort"), in CourseOut's shape;
    ``sessions``: the completed sessions when the caller has them already."""
    course = sessions if sessions is not None else completed_sessions(db=db, patient_id=patient_id)
    mood_effects = effects(db=db, patient_id=patient_id, metric="mood", sessions=course)
    rows = []
    for number, (session, effect) in enumerate(zip(course, mood_effects, strict=True), start=1):
        windows = {w.name: w for w in effect.windows}
        rows.append(
            {
                "number": number,
                "session_id": session.id,
                "started_at": session.started_at,
                "utc_offset_minutes": session.utc_offset_minutes,
                "local_date": _local_date_of_start(session),
                "drug": session.drug.value,
                "route": session.route.value,
                "dose_mg": session.dose_mg,
                "dose_mg_per_kg": session.dose_mg_per_kg,
                "pre": effect.pre,
                **{name: window.value for name, window in windows.items()},
                **{f"{name}_change": window.delta for name, window in windows.items()},
                "durability_days": effect.durability_days,
                "effect_ended": effect.effect_ended,
                "adverse_events": list(session.adverse_events or []),
            }
        )
    return {
        "sessions_completed": len(course),
        "phq9": summary(db=db, patient_id=patient_id, metric="phq9", rules=rules),
        "mood": summary(db=db, patient_id=patient_id, metric="mood", rules=rules),
        "sessions": rows,
    }
