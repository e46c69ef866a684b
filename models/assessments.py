"""Questionnaire responses and their history (writes: models.assessment_writes)."""

from __future__ import annotations

import uuid
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

from models.base import Base, utcnow
from models.errors import NotFound
from models.instruments import SELF_HARM_FLAG
from models.records import PatientRecord


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
