"""Where a patient stands on a metric: baseline, current level, the change between them and
the labels derived from it (response, remission, reliable and minimal important
improvement, relapse), as analytics.md "Baseline and current" and clinical.md §3 define."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from models.analytics.metrics import (
    INSTRUMENT_METRICS,
    METRICS,
    Direction,
    improvement_of,
    measured,
    range_params,
)
from models.instruments import band_of
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession
from models.sqltime import dialect_of, shifted

BASELINE_WINDOW = timedelta(days=14)
CURRENT_WINDOW = timedelta(days=7)


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
    row = db.connection().execute(statement, range_params(patient_id, date_from, date_to)).one()
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
    # The patient's measurements, the first completed session and the latest value in range
    # are each named once (common table expressions) and read by every rule below: spelt
    # out in each rule instead, the statement ran to 5,800 characters that PostgreSQL took
    # three times as long to plan as to run, and psycopg converted afresh on every request.
    # The measurements are NOT MATERIALIZED on both databases: inlined, each rule reads
    # only its own window through the (patient, occurred_at) index (the first and latest
    # value one row each, a baseline fortnight 28 rows), where a materialised copy has no
    # index and every rule scanned all of the patient's rows. PostgreSQL ran this for 600
    # entries in 0.20 ms instead of 1.11 ms (EXPLAIN ANALYZE, among 16 patients' entries).
    every = measured(metric).select().cte("measured").prefix_with("NOT MATERIALIZED")
    in_range = []
    if bounded_from:
        in_range.append(every.c.local_date >= bindparam("date_from"))
    if bounded_to:
        in_range.append(every.c.local_date <= bindparam("date_to"))
    newest = every.c.occurred_at.desc(), every.c.value.desc()
    latest = (
        select(every.c.occurred_at, every.c.value)
        .where(*in_range)
        .order_by(*newest)
        .limit(1)
        .cte("latest")
    )
    first_session = (
        select(func.min(TreatmentSession.started_at).label("at"))
        .where(
            TreatmentSession.patient_id == bindparam("patient_id"),
            TreatmentSession.deleted_at.is_(None),
            TreatmentSession.status == SessionStatus.completed,
        )
        .cte("first_session")
    )

    first_measured = select(func.min(every.c.occurred_at).label("at")).cte("first_measured")

    def mean(*where: ColumnElement[bool]) -> Any:
        return select(func.avg(every.c.value)).where(*where).scalar_subquery()

    def only_if(condition: ColumnElement[bool], value: Any) -> Any:
        # Both databases evaluate a subquery in a CASE only when its branch is taken: the
        # baseline rule that does not apply costs no scan of the patient's measurements.
        return case((condition, value))

    s1 = select(first_session.c.at).scalar_subquery()
    first = select(first_measured.c.at).scalar_subquery()
    latest_at = select(latest.c.occurred_at).scalar_subquery()
    fortnight = int(BASELINE_WINDOW.total_seconds())
    week = int(CURRENT_WINDOW.total_seconds())
    last_before_s1 = (
        select(every.c.value).where(every.c.occurred_at < s1).order_by(*newest).limit(1)
    ).scalar_subquery()
    treated = s1.is_not(None)
    return select(
        s1,
        only_if(
            treated,
            mean(every.c.occurred_at >= shifted(dialect, s1, -fortnight), every.c.occurred_at < s1),
        ),
        only_if(treated, last_before_s1),
        only_if(
            s1.is_(None),
            mean(
                every.c.occurred_at >= first,
                every.c.occurred_at < shifted(dialect, first, fortnight),
            ),
        ),
        latest_at,
        select(latest.c.value).scalar_subquery(),
        mean(
            *in_range,
            every.c.occurred_at > shifted(dialect, latest_at, -week),
            every.c.occurred_at <= latest_at,
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
        **range_params(patient_id, date_from, date_to),
        "cutoff": cutoff,
        "level": rules.relapse_min[metric],
    }
    remitted_at, relapsed = db.execute(statement, params).one()
    return None if remitted_at is None else bool(relapsed)


@functools.cache
def _relapse_statement(
    metric: str, operator: str, bounded_from: bool, bounded_to: bool
) -> Select[Any]:
    remitted = measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
    later = measured(metric, bounded_from=bounded_from, bounded_to=bounded_to)
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
