"""The alert rules (analytics.md "Alerts"), evaluated after every write that can make one true.

A rule is not a reaction to the record just stored: a session recorded after its check-ins,
a post entry edited down, a back-dated entry or form, a moved or deleted session can each
make a rule true for records stored earlier. So each write re-evaluates every rule whose
outcome it can change, over the records it can affect, in the writing transaction; the
alerts' unique key (triggering record, rule) keeps it to one alert per occasion however often
a rule is re-evaluated.

- ``self_harm``: a stored form whose safety item is positive (forms are never edited).
- ``worsening``: a PHQ-9 compared with the patient's previous one, by when each was answered;
  a stored or deleted form changes the comparison of the next one too.
- ``post_session_drop``: a mood entry in the first hours of a completed session's span, far
  below that session's pre mood; an entry's or a session's time, status or mood changes it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from models.alerts import Alert, AlertPriority, AlertRule, raise_alert
from models.analytics import PRE_FALLBACK_WINDOW, pre_values
from models.assessments import Assessment
from models.instruments import Score
from models.mood import MoodEntry
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession

# ------------------------------------------------------------------ questionnaires


def after_assessment_stored(
    *, db: Session, assessment: Assessment, result: Score, rules: RuleSet
) -> list[Alert]:
    """A new form: its own safety item and worsening, and the next PHQ-9's worsening."""
    alerts: list[Alert | None] = []
    if result.safety_item is not None and result.safety_value is not None:
        alerts.append(
            raise_alert(
                db=db,
                patient_id=assessment.patient_id,
                rule=AlertRule.self_harm,
                priority=AlertPriority(rules.self_harm_priority(result.safety_value)),
                source_type="assessment",
                source_id=assessment.id,
                rules=rules,
                details={
                    "instrument": assessment.instrument,
                    "item": result.safety_item,
                    "value": result.safety_value,
                    "total": result.total,
                },
            )
        )
    if assessment.instrument == "phq9":
        alerts.append(_check_worsening(db, assessment, rules))
        following = _neighbour_phq9(db, assessment, later=True)
        if following is not None:
            alerts.append(_check_worsening(db, following, rules))
    return [a for a in alerts if a is not None]


def after_assessment_deleted(*, db: Session, assessment: Assessment, rules: RuleSet) -> list[Alert]:
    """A deleted PHQ-9: the next one is now compared with the one before it."""
    if assessment.instrument != "phq9":
        return []
    following = _neighbour_phq9(db, assessment, later=True)
    alert = _check_worsening(db, following, rules) if following is not None else None
    return [alert] if alert is not None else []


def _check_worsening(db: Session, assessment: Assessment, rules: RuleSet) -> Alert | None:
    previous = _neighbour_phq9(db, assessment, later=False)
    severe = assessment.band == "severe"
    reasons = []
    if previous is not None and rules.is_worsening(previous.total, assessment.total):
        reasons.append("increase")
    if severe and (previous is None or previous.band != "severe"):
        reasons.append("entered_severe")
    if not reasons:
        return None
    return raise_alert(
        db=db,
        patient_id=assessment.patient_id,
        rule=AlertRule.worsening,
        priority=AlertPriority.medium,
        source_type="assessment",
        source_id=assessment.id,
        rules=rules,
        details={
            "instrument": "phq9",
            "reasons": reasons,
            "total": assessment.total,
            "band": assessment.band,
            "previous_assessment_id": str(previous.id) if previous else None,
            "previous_total": previous.total if previous else None,
            "previous_band": previous.band if previous else None,
            "threshold_points": rules.worsening_points,
        },
    )


def _neighbour_phq9(db: Session, assessment: Assessment, *, later: bool) -> Assessment | None:
    """The live PHQ-9 just before (or after) this one, by when each was answered."""
    # Ties on occurred_at go by creation, so a late-synced older form is placed rightly.
    at, created = assessment.occurred_at, assessment.created_at
    if later:
        order = (Assessment.occurred_at, Assessment.created_at)
        beyond = or_(
            Assessment.occurred_at > at,
            and_(Assessment.occurred_at == at, Assessment.created_at > created),
        )
    else:
        order = (Assessment.occurred_at.desc(), Assessment.created_at.desc())
        beyond = or_(
            Assessment.occurred_at < at,
            and_(Assessment.occurred_at == at, Assessment.created_at < created),
        )
    return db.scalars(
        select(Assessment)
        .where(
            Assessment.patient_id == assessment.patient_id,
            Assessment.instrument == "phq9",
            Assessment.deleted_at.is_(None),
            Assessment.id != assessment.id,
            beyond,
        )
        .order_by(*order)
        .limit(1)
    ).first()


# ------------------------------------------------------------------ sessions and mood


def recheck_post_session_drop(
    *,
    db: Session,
    patient_id: uuid.UUID,
    rules: RuleSet,
    instants: Iterable[datetime],
    session_ids: Iterable[uuid.UUID] = (),
) -> list[Alert]:
    """Raise every post_session_drop alert that a change at ``instants`` (an entry's old and
    new time, a session's old and new start) or to ``session_ids`` can have made true."""
    times = list(instants)
    named = list(session_ids)
    if not times and not named:
        return []
    window = timedelta(hours=rules.post_session_window_hours)
    # A session is touched when an instant falls in its first hours, or in the day before
    # it (the fallback pre value), or when it is named (its own change, a linked check-in).
    lows, highs = [t - window for t in times], [t + PRE_FALLBACK_WINDOW for t in times]
    candidates = _candidate_sessions(db, patient_id, lows, highs, named)
    if not candidates:
        return []
    ends = _span_ends(db, patient_id, candidates)
    pres = pre_values(db=db, patient_id=patient_id, metric="mood", sessions=candidates)
    alerts = []
    for session in candidates:
        pre = pres.get(session.id)
        if pre is None:
            continue
        until = session.started_at + window
        span_end = ends[session.id]
        for entry in _low_entries(db, patient_id, session, until, span_end, pre, rules):
            alert = raise_alert(
                db=db,
                patient_id=patient_id,
                rule=AlertRule.post_session_drop,
                priority=AlertPriority.medium,
                source_type="mood_entry",
                source_id=entry.id,
                rules=rules,
                details={
                    "session_id": str(session.id),
                    "pre_mood": round(pre, 2),
                    "mood": entry.mood,
                    "hours_after_start": round(
                        (entry.occurred_at - session.started_at).total_seconds() / 3600, 1
                    ),
                },
            )
            if alert is not None:
                alerts.append(alert)
    return alerts


_START_ORDER = (TreatmentSession.started_at, TreatmentSession.id)


def _completed(patient_id: uuid.UUID | Any) -> list[ColumnElement[bool]]:
    return [
        TreatmentSession.patient_id == patient_id,
        TreatmentSession.deleted_at.is_(None),
        TreatmentSession.status == SessionStatus.completed,
    ]


def _candidate_sessions(
    db: Session,
    patient_id: uuid.UUID,
    lows: Sequence[datetime],
    highs: Sequence[datetime],
    named: Sequence[uuid.UUID],
) -> list[TreatmentSession]:
    params: dict[str, Any] = {"patient_id": patient_id, "named": list(named)}
    for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
        params[f"low{i}"], params[f"high{i}"] = low, high
    # Nearly every entry is far from any session: ask for ids on the session's connection
    # (the ORM's execution costs several times the round trip), and load the sessions
    # themselves only when there are some. The connection does not autoflush: every caller
    # has flushed (or inserted with Core) the change it asks about.
    statement = _candidate_statement(len(lows), bool(named))
    ids = db.connection().execute(statement, params).scalars().all()
    if not ids:
        return []
    chosen = TreatmentSession.id.in_(ids)
    return list(db.scalars(select(TreatmentSession).where(chosen).order_by(*_START_ORDER)))


# Built once per shape and reused with new parameters: every mood entry written asks this,
# and building the statement cost more than running it. Only the shapes of single writes
# are kept (an entry's time, an edit's old and new time, with or without named sessions):
# a batch has an instant per entry, and keeping a statement per batch size would let
# clients grow the cache (hundreds of MiB per worker over sizes 1-500).
CACHED_INSTANTS = 4


def _candidate_statement(instants: int, named: bool) -> Select[tuple[uuid.UUID]]:
    if instants <= CACHED_INSTANTS:
        return _cached_candidate_statement(instants, named)
    return _build_candidate_statement(instants, named)


def _build_candidate_statement(instants: int, named: bool) -> Select[tuple[uuid.UUID]]:
    near: list[ColumnElement[bool]] = [
        TreatmentSession.started_at.between(bindparam(f"low{i}"), bindparam(f"high{i}"))
        for i in range(instants)
    ]
    if named:
        near.append(TreatmentSession.id.in_(bindparam("named", expanding=True)))
    return select(TreatmentSession.id).where(*_completed(bindparam("patient_id")), or_(*near))


_cached_candidate_statement = functools.cache(_build_candidate_statement)


def _span_ends(
    db: Session, patient_id: uuid.UUID, sessions: Sequence[TreatmentSession]
) -> dict[uuid.UUID, datetime | None]:
    """Each session's span end: the start of the next completed session, if any."""
    later = list(
        db.execute(
            select(TreatmentSession.id, TreatmentSession.started_at)
            .where(*_completed(patient_id), TreatmentSession.started_at >= sessions[0].started_at)
            .order_by(*_START_ORDER)
        )
    )
    order = [row.id for row in later]
    ends: dict[uuid.UUID, datetime | None] = {}
    for session in sessions:
        position = order.index(session.id)
        ends[session.id] = later[position + 1].started_at if position + 1 < len(later) else None
    return ends


def _low_entries(
    db: Session,
    patient_id: uuid.UUID,
    session: TreatmentSession,
    until: datetime,
    span_end: datetime | None,
    pre: float,
    rules: RuleSet,
) -> Sequence[MoodEntry]:
    """Live entries in (start, min(start + window, span end)) at least the drop below pre
    that have not raised this alert yet."""
    params: dict[str, Any] = {
        "patient_id": patient_id,
        "start": session.started_at,
        "until": until,
        "span_end": span_end or until + timedelta(seconds=1),
        "highest": pre - rules.post_session_drop_points,
    }
    return db.scalars(_low_entries_statement(), params).all()


@functools.cache
def _low_entries_statement() -> Select[tuple[MoodEntry]]:
    already = exists().where(
        Alert.source_type == "mood_entry",
        Alert.source_id == MoodEntry.id,
        Alert.rule == AlertRule.post_session_drop.value,
    )
    return (
        select(MoodEntry)
        .where(
            MoodEntry.patient_id == bindparam("patient_id"),
            MoodEntry.deleted_at.is_(None),
            MoodEntry.occurred_at > bindparam("start"),
            MoodEntry.occurred_at <= bindparam("until"),
            MoodEntry.occurred_at < bindparam("span_end"),
            MoodEntry.mood <= bindparam("highest"),
            ~already,
        )
        .order_by(MoodEntry.occurred_at, MoodEntry.id)
    )
