"""Questionnaire responses: scored on the server, stored once, alerted in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User
from models.alerts import Alert, alerts_for_assessment
from models.base import Base, utcnow
from models.checkins import check_session_link
from models.errors import Forbidden, NotFound
from models.instruments import SELF_HARM_FLAG, Instrument, get_instrument, score
from models.outcomes import RuleSet
from models.records import PatientRecord, fingerprint, insert_once


class Assessment(PatientRecord, Base):
    """One completed questionnaire with its server-computed total and band."""

    __tablename__ = "assessments"

    instrument: Mapped[str] = mapped_column(String(32))
    answers: Mapped[list[int]] = mapped_column(JSON)
    difficulty: Mapped[int | None]
    total: Mapped[int]
    band: Mapped[str | None] = mapped_column(String(32))
    flags: Mapped[list[str]] = mapped_column(JSON)
    # Kept with every response so totals and bands can be recomputed (clinical.md §1).
    instrument_version: Mapped[str] = mapped_column(String(32))
    scoring_version: Mapped[str] = mapped_column(String(32))
    ruleset_version: Mapped[str] = mapped_column(String(64))
    # The clinician who rated a clinician-rated instrument; null for self-report.
    rated_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The treatment session the form belongs to, and whether it was taken before or after.
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("treatment_sessions.id", ondelete="SET NULL")
    )
    phase: Mapped[str | None] = mapped_column(String(8))

    __table_args__ = (
        UniqueConstraint("patient_id", "idempotency_key"),
        CheckConstraint("phase IN ('pre', 'post')", name="phase_known"),
        Index("ix_assessments_patient_time", "patient_id", "occurred_at"),
        Index("ix_assessments_patient_instrument_time", "patient_id", "instrument", "occurred_at"),
    )

    @property
    def safety_item_positive(self) -> bool:
        """Whether the safety item (PHQ-9 item 9, QIDS-SR16 item 12) was answered >= 1."""
        return SELF_HARM_FLAG in (self.flags or [])


class AssessmentVersion(Base):
    """An assessment as it was before a change: who changed it and when."""

    __tablename__ = "assessment_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("assessments.id", ondelete="CASCADE")
    )
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    change: Mapped[str] = mapped_column(Text)  # "delete" (assessments are not edited)

    __table_args__ = (Index("ix_assessment_versions_assessment", "assessment_id", "version"),)


@dataclass
class Submitted:
    """The outcome of a create: the stored assessment, whether it is new, its alerts."""

    assessment: Assessment
    created: bool
    alerts: list[Alert] = field(default_factory=list)


def check_respondent(*, instrument: Instrument, actor: User, patient_id: uuid.UUID) -> None:
    """Self-report forms only by the patient; clinician-rated ones only by a clinician."""
    # The view has already checked that the actor may see the patient (a clinician through
    # a live care link), so a clinician here is a linked one.
    if instrument.respondent == "patient":
        if actor.role != Role.patient or actor.id != patient_id:
            raise Forbidden(f"Only the patient answers {instrument.name}.")
    elif actor.role != Role.clinician:
        raise Forbidden(f"{instrument.name} is rated by a linked clinician.")


def create_assessment(
    *,
    db: Session,
    patient_id: uuid.UUID,
    actor: User,
    data: Mapping[str, Any],
    rules: RuleSet,
    idempotency_key: str | None = None,
) -> Submitted:
    """Score and store a form, or return the stored one for a replay; alerts for a new one."""
    # Nothing is committed here: the caller commits once, so the assessment and its alerts
    # are stored together or not at all.
    instrument = get_instrument(data["instrument"])
    check_respondent(instrument=instrument, actor=actor, patient_id=patient_id)
    result = score(instrument, data["answers"], data.get("difficulty"))
    check_session_link(
        db=db,
        patient_id=patient_id,
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        occurred_at=data["occurred_at"],
    )
    assessment = Assessment(
        id=data.get("id"),
        patient_id=patient_id,
        created_by_id=actor.id,
        rated_by_id=actor.id if instrument.respondent == "clinician" else None,
        instrument=instrument.code,
        answers=list(data["answers"]),
        difficulty=data.get("difficulty"),
        session_id=data.get("session_id"),
        phase=data.get("phase"),
        total=result.total,
        band=result.band.code if result.band else None,
        flags=list(result.flags),
        instrument_version=instrument.instrument_version,
        scoring_version=instrument.scoring_version,
        ruleset_version=rules.version,
        fingerprint=fingerprint(data),
        idempotency_key=idempotency_key,
    )
    assessment.set_occurred_at(data["occurred_at"])
    stored, created = insert_once(db=db, record=assessment, idempotency_key=idempotency_key)
    if not created:
        # A replay: its alerts were raised with the original create.
        return Submitted(stored, False)
    alerts = alerts_for_assessment(db=db, assessment=stored, result=result, rules=rules)
    return Submitted(stored, True, alerts)


def get_assessment(*, db: Session, patient_id: uuid.UUID, assessment_id: uuid.UUID) -> Assessment:
    """A live assessment of this patient, else NotFound."""
    assessment = db.get(Assessment, assessment_id)
    if (
        assessment is None
        or assessment.patient_id != patient_id
        or assessment.deleted_at is not None
    ):
        raise NotFound("No such assessment.")
    return assessment


def _snapshot(assessment: Assessment) -> dict[str, Any]:
    return {
        "instrument": assessment.instrument,
        "occurred_at": assessment.occurred_at_local.isoformat(),
        "answers": list(assessment.answers),
        "difficulty": assessment.difficulty,
        "session_id": str(assessment.session_id) if assessment.session_id else None,
        "phase": assessment.phase,
        "total": assessment.total,
        "band": assessment.band,
        "flags": list(assessment.flags),
        "instrument_version": assessment.instrument_version,
        "scoring_version": assessment.scoring_version,
        "ruleset_version": assessment.ruleset_version,
    }


def delete_assessment(*, db: Session, assessment: Assessment, actor: User) -> None:
    """Soft delete, keeping the prior version; its alerts stay (they record what happened)."""
    check_respondent(
        instrument=get_instrument(assessment.instrument),
        actor=actor,
        patient_id=assessment.patient_id,
    )
    db.add(
        AssessmentVersion(
            assessment_id=assessment.id,
            version=assessment.version,
            snapshot=_snapshot(assessment),
            changed_by_id=actor.id,
            change="delete",
        )
    )
    assessment.deleted_at = assessment.updated_at = utcnow()
    db.flush()
