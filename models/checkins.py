"""Check-ins tied to a treatment session, and the post_session_drop alert they can raise."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from models.alerts import Alert, AlertPriority, AlertRule, raise_alert
from models.errors import RuleViolation
from models.outcomes import RuleSet
from models.sessions import SessionStatus, TreatmentSession

if TYPE_CHECKING:
    from models.mood import MoodEntry

PHASES = ("pre", "post")


def check_session_link(
    *,
    db: Session,
    patient_id: uuid.UUID,
    session_id: uuid.UUID | None,
    phase: str | None,
    occurred_at: datetime,
) -> None:
    """A linked check-in names a live session of the same patient and sits on the right
    side of its start: ``pre`` before it, ``post`` after it."""
    if session_id is None and phase is None:
        return
    if session_id is None:
        raise RuleViolation({"session_id": ["Give the session this check-in belongs to."]})
    session = db.get(TreatmentSession, session_id)
    if session is None or session.patient_id != patient_id or session.deleted_at is not None:
        raise RuleViolation({"session_id": ["No such session of this patient."]})
    if phase is None:
        raise RuleViolation({"phase": ["Say whether the check-in is pre or post."]})
    if phase == "pre" and not occurred_at < session.started_at:
        raise RuleViolation({"phase": ["A pre-session check-in must precede the session."]})
    if phase == "post" and not occurred_at > session.started_at:
        raise RuleViolation({"phase": ["A post-session check-in must follow the session."]})


def post_session_drop_alerts(
    *, db: Session, patient_id: uuid.UUID, entries: Sequence[MoodEntry], rules: RuleSet
) -> list[Alert]:
    """Alert when a mood entry in the first hours of a session's span is far below that
    session's pre mood (analytics.md "Alerts"); in the caller's transaction."""
    from models.analytics import pre_values  # analytics imports this module's neighbours

    if not entries:
        return []
    window = timedelta(hours=rules.post_session_window_hours)
    earliest = min(e.occurred_at for e in entries)
    latest = max(e.occurred_at for e in entries)
    # Completed sessions that can own one of these entries, plus the next one (span ends).
    course = list(
        db.scalars(
            _course_statement(),
            {"patient_id": patient_id, "earliest": earliest - window, "latest": latest},
        )
    )
    if not course:
        return []
    following = db.scalar(
        _following_statement(),
        {"patient_id": patient_id, "after": course[-1].started_at, "last_id": course[-1].id},
    )
    pres = pre_values(db=db, patient_id=patient_id, metric="mood", sessions=course)
    ends = [s.started_at for s in course[1:]] + [following]
    alerts = []
    for entry in entries:
        for session, span_end in zip(course, ends, strict=True):
            start = session.started_at
            in_span = start < entry.occurred_at and (
                span_end is None or entry.occurred_at < span_end
            )
            pre = pres.get(session.id)
            if not in_span or entry.occurred_at > start + window or pre is None:
                continue
            if entry.mood <= pre - rules.post_session_drop_points:
                alerts.append(
                    raise_alert(
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
                                (entry.occurred_at - start).total_seconds() / 3600, 1
                            ),
                        },
                    )
                )
    return alerts


def _completed() -> list[ColumnElement[bool]]:
    return [
        TreatmentSession.patient_id == bindparam("patient_id"),
        TreatmentSession.deleted_at.is_(None),
        TreatmentSession.status == SessionStatus.completed,
    ]


# Built once: every new mood entry runs the first, and building it cost about as much as
# running it.
@functools.cache
def _course_statement() -> Select[tuple[TreatmentSession]]:
    return (
        select(TreatmentSession)
        .where(
            *_completed(),
            TreatmentSession.started_at >= bindparam("earliest"),
            TreatmentSession.started_at < bindparam("latest"),
        )
        .order_by(TreatmentSession.started_at, TreatmentSession.id)
    )


@functools.cache
def _following_statement() -> Select[tuple[datetime]]:
    return (
        select(TreatmentSession.started_at)
        .where(
            *_completed(),
            TreatmentSession.started_at >= bindparam("after"),
            TreatmentSession.id != bindparam("last_id"),
        )
        .order_by(TreatmentSession.started_at)
        .limit(1)
    )
