"""The clinician's cohort: one summary row per linked patient (analytics.md "Course and
cohort"), computed for every linked patient in one SQL statement so that sorting, the
needs-attention filter and paging cost the same whatever the cohort's size."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from models.accounts import User
from models.alerts import Alert
from models.assessments import Assessment
from models.care import CareLink
from models.instruments import band_of
from models.mood import MoodEntry
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession
from models.sqltime import shifted

ADHERENCE_DAYS = 14
QUIET_DAYS = 3
RECENT_SESSION_DAYS = 30
SORTS = ("latest_phq9", "change", "last_entry", "open_alerts", "linked_since", "name")


@dataclass(frozen=True)
class CohortRow:
    """One linked patient at a glance."""

    patient_id: uuid.UUID
    display_name: str
    timezone: str
    linked_since: datetime
    latest_phq9: int | None
    latest_phq9_band: str | None
    latest_phq9_date: date | None
    phq9_baseline: float | None
    phq9_current: float | None
    phq9_change: float | None
    response: bool | None
    remission: bool | None
    sessions_completed: int
    last_session_start: datetime | None
    last_entry_at: datetime | None
    adherence_14d: float
    open_alerts: int
    needs_attention: bool


def cohort_query(*, db: Session, clinician_id: uuid.UUID, now: datetime) -> Select[Any]:
    """Every linked patient with the cohort columns, as one statement."""
    linked = (
        select(CareLink.patient_id, func.min(CareLink.created_at).label("linked_since"))
        .where(CareLink.clinician_id == clinician_id, CareLink.ended_at.is_(None))
        .group_by(CareLink.patient_id)
        .cte("linked")
    )
    mine = select(linked.c.patient_id)
    phq = (
        select(
            Assessment.id,
            Assessment.patient_id,
            Assessment.occurred_at,
            Assessment.local_date,
            Assessment.total,
            Assessment.band,
        )
        .where(
            Assessment.instrument == "phq9",
            Assessment.deleted_at.is_(None),
            Assessment.patient_id.in_(mine),
        )
        .cte("phq")
    )
    ranked = select(
        phq,
        func.row_number()
        .over(partition_by=phq.c.patient_id, order_by=(phq.c.occurred_at.desc(), phq.c.id.desc()))
        .label("rn"),
    ).subquery()
    latest = select(ranked).where(ranked.c.rn == 1).cte("latest")
    course = (
        select(
            TreatmentSession.patient_id,
            func.min(TreatmentSession.started_at).label("s1"),
            func.max(TreatmentSession.started_at).label("last_start"),
            func.count().label("completed"),
        )
        .where(
            TreatmentSession.status == SessionStatus.completed,
            TreatmentSession.deleted_at.is_(None),
            TreatmentSession.patient_id.in_(mine),
        )
        .group_by(TreatmentSession.patient_id)
        .cte("course")
    )
    # Baseline, three ways (analytics.md): the fortnight before S1; else the last before S1;
    # with no completed session, the fortnight from the first PHQ-9.
    before_s1 = (
        select(phq.c.patient_id, func.avg(phq.c.total).label("value"))
        .join(course, course.c.patient_id == phq.c.patient_id)
        .where(
            phq.c.occurred_at >= shifted(db, course.c.s1, -14 * 86400),
            phq.c.occurred_at < course.c.s1,
        )
        .group_by(phq.c.patient_id)
        .cte("before_s1")
    )
    last_ranked = (
        select(
            phq.c.patient_id,
            phq.c.total,
            func.row_number()
            .over(partition_by=phq.c.patient_id, order_by=phq.c.occurred_at.desc())
            .label("rn"),
        )
        .join(course, course.c.patient_id == phq.c.patient_id)
        .where(phq.c.occurred_at < course.c.s1)
        .subquery()
    )
    last_before = (
        select(last_ranked.c.patient_id, last_ranked.c.total)
        .where(last_ranked.c.rn == 1)
        .cte("last_before")
    )
    first = (
        select(phq.c.patient_id, func.min(phq.c.occurred_at).label("first_at"))
        .group_by(phq.c.patient_id)
        .cte("first_phq")
    )
    first_fortnight = (
        select(phq.c.patient_id, func.avg(phq.c.total).label("value"))
        .join(first, first.c.patient_id == phq.c.patient_id)
        .where(
            phq.c.occurred_at >= first.c.first_at,
            phq.c.occurred_at < shifted(db, first.c.first_at, 14 * 86400),
        )
        .group_by(phq.c.patient_id)
        .cte("first_fortnight")
    )
    current = (
        select(phq.c.patient_id, func.avg(phq.c.total).label("value"))
        .join(latest, latest.c.patient_id == phq.c.patient_id)
        .where(
            phq.c.occurred_at > shifted(db, latest.c.occurred_at, -7 * 86400),
            phq.c.occurred_at <= latest.c.occurred_at,
        )
        .group_by(phq.c.patient_id)
        .cte("current_phq")
    )
    entries = (
        select(MoodEntry.patient_id, func.max(MoodEntry.occurred_at).label("last_at"))
        .where(MoodEntry.deleted_at.is_(None), MoodEntry.patient_id.in_(mine))
        .group_by(MoodEntry.patient_id)
        .cte("entries")
    )
    alerts = (
        select(Alert.patient_id, func.count().label("open"))
        .where(Alert.acknowledged_at.is_(None), Alert.patient_id.in_(mine))
        .group_by(Alert.patient_id)
        .cte("open_alert_counts")
    )
    baseline = case(
        (course.c.s1.is_not(None), func.coalesce(before_s1.c.value, last_before.c.total)),
        else_=first_fortnight.c.value,
    )
    open_alerts = func.coalesce(alerts.c.open, 0)
    quiet = or_(entries.c.last_at.is_(None), entries.c.last_at < now - timedelta(days=QUIET_DAYS))
    recent_session = course.c.last_start >= now - timedelta(days=RECENT_SESSION_DAYS)
    needs_attention = or_(open_alerts > 0, and_(quiet, recent_session))
    return (
        select(
            User.id.label("patient_id"),
            User.display_name,
            User.timezone,
            linked.c.linked_since,
            latest.c.total.label("latest_phq9"),
            latest.c.band.label("latest_band"),
            latest.c.local_date.label("latest_date"),
            baseline.label("baseline"),
            current.c.value.label("current"),
            (current.c.value - baseline).label("change"),
            func.coalesce(course.c.completed, 0).label("completed"),
            course.c.last_start,
            entries.c.last_at,
            open_alerts.label("open_alerts"),
            case((needs_attention, literal(True)), else_=literal(False)).label("attention"),
        )
        .join(linked, linked.c.patient_id == User.id)
        .outerjoin(latest, latest.c.patient_id == User.id)
        .outerjoin(course, course.c.patient_id == User.id)
        .outerjoin(before_s1, before_s1.c.patient_id == User.id)
        .outerjoin(last_before, last_before.c.patient_id == User.id)
        .outerjoin(first_fortnight, first_fortnight.c.patient_id == User.id)
        .outerjoin(current, current.c.patient_id == User.id)
        .outerjoin(entries, entries.c.patient_id == User.id)
        .outerjoin(alerts, alerts.c.patient_id == User.id)
    )


def cohort_page(
    *,
    db: Session,
    clinician_id: uuid.UUID,
    now: datetime,
    rules: RuleSet,
    sort: str = "-open_alerts",
    needs_attention: bool | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[CohortRow], bool]:
    """One page of the cohort, and whether more follow. Two statements whatever the size."""
    stmt = cohort_query(db=db, clinician_id=clinician_id, now=now).subquery()
    query = select(stmt)
    if needs_attention is not None:
        query = query.where(stmt.c.attention == needs_attention)
    descending = sort.startswith("-")
    column = {
        "latest_phq9": stmt.c.latest_phq9,
        "change": stmt.c.change,
        "last_entry": stmt.c.last_at,
        "open_alerts": stmt.c.open_alerts,
        "linked_since": stmt.c.linked_since,
        "name": stmt.c.display_name,
    }[sort.lstrip("-")]
    order = column.desc() if descending else column.asc()
    query = query.order_by(order.nulls_last(), stmt.c.patient_id).offset(offset).limit(limit + 1)
    rows = db.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    adherence = _adherence(db=db, rows=rows, now=now)
    out = []
    for r in rows:
        base, cur = _num(r.baseline), _num(r.current)
        out.append(
            CohortRow(
                patient_id=r.patient_id,
                display_name=r.display_name,
                timezone=r.timezone,
                linked_since=r.linked_since,
                latest_phq9=r.latest_phq9,
                latest_phq9_band=r.latest_band or _band(r.latest_phq9),
                latest_phq9_date=r.latest_date,
                phq9_baseline=base,
                phq9_current=cur,
                phq9_change=None if base is None or cur is None else cur - base,
                response=None
                if base is None or cur is None or base <= 0
                else cur <= rules.response_fraction * base,
                remission=rules.in_remission("phq9", cur),
                sessions_completed=int(r.completed),
                last_session_start=r.last_start,
                last_entry_at=r.last_at,
                adherence_14d=adherence.get(r.patient_id, 0.0),
                open_alerts=int(r.open_alerts),
                needs_attention=bool(r.attention),
            )
        )
    return out, more


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _band(total: int | None) -> str | None:
    found = band_of("phq9", total) if total is not None else None
    return found.code if found else None


def local_today(zone: str, now: datetime) -> date:
    """Today's date in the patient's time zone."""
    return now.astimezone(ZoneInfo(zone)).date()


def _adherence(*, db: Session, rows: Sequence[Any], now: datetime) -> dict[uuid.UUID, float]:
    """Days with a mood entry among each patient's last 14 local dates, over 14: one query."""
    if not rows:
        return {}
    windows = []
    for r in rows:
        today = local_today(r.timezone, now)
        windows.append(
            and_(
                MoodEntry.patient_id == r.patient_id,
                MoodEntry.local_date > today - timedelta(days=ADHERENCE_DAYS),
                MoodEntry.local_date <= today,
            )
        )
    counts = db.execute(
        select(MoodEntry.patient_id, func.count(func.distinct(MoodEntry.local_date)))
        .where(MoodEntry.deleted_at.is_(None), or_(*windows))
        .group_by(MoodEntry.patient_id)
    ).all()
    return {pid: n / ADHERENCE_DAYS for pid, n in counts}
