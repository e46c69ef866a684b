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

from sqlalchemy import Select, Subquery, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from models.accounts import User
from models.alerts import Alert
from models.assessments import Assessment
from models.care import CareLink, visible_link
from models.instruments import band_of
from models.mood import MoodEntry
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession
from models.sqltime import shifted

ADHERENCE_DAYS = 14
QUIET_DAYS = 3
RECENT_SESSION_DAYS = 30
SORTS = ("latest_phq9", "change", "last_entry", "open_alerts", "linked_since", "name")
# Built once: each statement binds "phq9" once however many subqueries use it.
LIVE_PHQ9 = (Assessment.instrument == "phq9", Assessment.deleted_at.is_(None))
COMPLETED = (
    TreatmentSession.status == SessionStatus.completed,
    TreatmentSession.deleted_at.is_(None),
)


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


def cohort_query(
    *,
    db: Session,
    clinician_id: uuid.UUID,
    now: datetime,
    organisation_id: uuid.UUID | None = None,
) -> Select[Any]:
    """Every patient the clinician sees through a care link (in one organisation, or in all
    of theirs) with the cohort columns, as one statement.

    Each column is a correlated subquery that an index answers with a short range scan
    (patient first in every index), so the cost grows with the number of linked patients,
    not with the length of their histories.
    """
    facts = _facts(clinician_id, organisation_id)
    rows = select(
        facts.c.patient_id,
        facts.c.display_name,
        facts.c.timezone,
        facts.c.linked_since,
        facts.c.latest_phq9,
        facts.c.latest_band,
        facts.c.latest_date,
        _phq9_baseline(db, facts).label("baseline"),
        _phq9_current(db, facts).label("current"),
        facts.c.completed,
        facts.c.last_start,
        facts.c.last_at,
        facts.c.open_alerts,
        _needs_attention(facts, now).label("attention"),
    ).subquery("rows")
    return select(rows, (rows.c.current - rows.c.baseline).label("change"))


def _latest_phq9(column: Any) -> Any:
    """``column`` of the patient's latest live PHQ-9."""
    return (
        select(column)
        .where(Assessment.patient_id == User.id, *LIVE_PHQ9)
        .order_by(Assessment.occurred_at.desc(), Assessment.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _facts(clinician_id: uuid.UUID, organisation_id: uuid.UUID | None) -> Subquery:
    """One row per visible patient with the facts the cohort columns are computed from."""
    return (
        select(
            User.id.label("patient_id"),
            User.display_name,
            User.timezone,
            CareLink.created_at.label("linked_since"),
            _latest_phq9(Assessment.total).label("latest_phq9"),
            _latest_phq9(Assessment.band).label("latest_band"),
            _latest_phq9(Assessment.local_date).label("latest_date"),
            _latest_phq9(Assessment.occurred_at).label("latest_at"),
            select(func.min(Assessment.occurred_at))
            .where(Assessment.patient_id == User.id, *LIVE_PHQ9)
            .scalar_subquery()
            .label("first_at"),
            select(func.min(TreatmentSession.started_at))
            .where(TreatmentSession.patient_id == User.id, *COMPLETED)
            .scalar_subquery()
            .label("s1"),
            select(func.max(TreatmentSession.started_at))
            .where(TreatmentSession.patient_id == User.id, *COMPLETED)
            .scalar_subquery()
            .label("last_start"),
            select(func.count())
            .where(TreatmentSession.patient_id == User.id, *COMPLETED)
            .scalar_subquery()
            .label("completed"),
            select(MoodEntry.occurred_at)
            .where(MoodEntry.patient_id == User.id, MoodEntry.deleted_at.is_(None))
            .order_by(MoodEntry.occurred_at.desc())
            .limit(1)
            .scalar_subquery()
            .label("last_at"),
            select(func.count())
            .where(Alert.patient_id == User.id, Alert.acknowledged_at.is_(None))
            .scalar_subquery()
            .label("open_alerts"),
        )
        .join(CareLink, CareLink.patient_id == User.id)
        .where(visible_link(clinician_id, organisation_id=organisation_id))
        .subquery("facts")
    )


def _phq9_mean(facts: Subquery, *conditions: Any) -> Any:
    return (
        select(func.avg(Assessment.total))
        .where(Assessment.patient_id == facts.c.patient_id, *LIVE_PHQ9, *conditions)
        .scalar_subquery()
    )


def _phq9_baseline(db: Session, facts: Subquery) -> Any:
    """Baseline, three ways (analytics.md): the fortnight before S1; else the last before
    S1; with no completed session, the fortnight from the first PHQ-9."""
    last_before_s1 = (
        select(Assessment.total)
        .where(
            Assessment.patient_id == facts.c.patient_id,
            *LIVE_PHQ9,
            Assessment.occurred_at < facts.c.s1,
        )
        .order_by(Assessment.occurred_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return case(
        (
            facts.c.s1.is_not(None),
            func.coalesce(
                _phq9_mean(
                    facts,
                    Assessment.occurred_at >= shifted(db, facts.c.s1, -14 * 86400),
                    Assessment.occurred_at < facts.c.s1,
                ),
                last_before_s1,
            ),
        ),
        else_=_phq9_mean(
            facts,
            Assessment.occurred_at >= facts.c.first_at,
            Assessment.occurred_at < shifted(db, facts.c.first_at, 14 * 86400),
        ),
    )


def _phq9_current(db: Session, facts: Subquery) -> Any:
    """The mean of the PHQ-9s in the week up to and including the latest one."""
    return _phq9_mean(
        facts,
        Assessment.occurred_at > shifted(db, facts.c.latest_at, -7 * 86400),
        Assessment.occurred_at <= facts.c.latest_at,
    )


def _needs_attention(facts: Subquery, now: datetime) -> Any:
    """An open alert, or quiet for QUIET_DAYS after a session in the last RECENT_SESSION_DAYS."""
    quiet = or_(facts.c.last_at.is_(None), facts.c.last_at < now - timedelta(days=QUIET_DAYS))
    recent_session = facts.c.last_start >= now - timedelta(days=RECENT_SESSION_DAYS)
    needs_attention = or_(facts.c.open_alerts > 0, and_(quiet, recent_session))
    return case((needs_attention, literal(True)), else_=literal(False))


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
    organisation_id: uuid.UUID | None = None,
) -> tuple[list[CohortRow], bool]:
    """One page of the cohort, and whether more follow. Two statements whatever the size."""
    stmt = cohort_query(
        db=db, clinician_id=clinician_id, now=now, organisation_id=organisation_id
    ).subquery()
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
                response=rules.is_response(base, cur),
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
