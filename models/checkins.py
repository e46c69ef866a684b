"""Check-ins tied to a treatment session (the alert they can raise: models.alert_rules)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from models.errors import RuleViolation
from models.sessions import TreatmentSession

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
