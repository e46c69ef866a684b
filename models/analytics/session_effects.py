"""What each treatment session did: its pre value, the effect windows after it, how long the
effect lasted, and the course of sessions as a whole (analytics.md "Effect of one
session" and "Course and cohort")."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, literal, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from models.analytics.metrics import improvement_of, is_better_or_equal_failure, measured
from models.analytics.summaries import summary
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession
from models.sqltime import dialect_of

PRE_FALLBACK_WINDOW = timedelta(hours=24)
# Effect windows after a session's start s: (name, after, up to and including).
EFFECT_WINDOWS: tuple[tuple[str, timedelta, timedelta], ...] = (
    ("acute", timedelta(0), timedelta(hours=4)),
    ("day1", timedelta(hours=12), timedelta(hours=36)),
    ("day3", timedelta(hours=60), timedelta(hours=84)),
    ("day7", timedelta(days=6), timedelta(days=8)),
)


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
    m = measured(metric)
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
    m = measured(metric)
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
    m = measured(metric)
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
    m = measured(metric)
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
