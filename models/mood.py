"""Daily mood entries and their history (writes: models.mood_writes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
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
from models.records import PatientRecord

# The values a mood entry measures (analytics.md "Measurements").
MOOD_METRICS = ("mood", "anxiety", "energy", "sleep_hours")


class MoodEntry(PatientRecord, Base):
    """One mood check-in from the phone."""

    __tablename__ = "mood_entries"

    mood: Mapped[int]
    anxiety: Mapped[int | None]
    energy: Mapped[int | None]
    sleep_hours: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("treatment_sessions.id", ondelete="SET NULL")
    )
    phase: Mapped[str | None] = mapped_column(String(8))
    # Position in the patient's change feed (models.sync); rises on every change.
    change_seq: Mapped[int]

    __table_args__ = (
        UniqueConstraint("patient_id", "idempotency_key"),
        Index("ix_mood_entries_patient_time", "patient_id", "occurred_at"),
        Index("ix_mood_entries_patient_local_date", "patient_id", "local_date"),
        Index("ix_mood_entries_patient_change", "patient_id", "change_seq"),
        CheckConstraint("mood BETWEEN 0 AND 10", name="mood_range"),
        CheckConstraint("anxiety BETWEEN 0 AND 10", name="anxiety_range"),
        CheckConstraint("energy BETWEEN 0 AND 10", name="energy_range"),
        CheckConstraint("sleep_hours BETWEEN 0 AND 24", name="sleep_range"),
        CheckConstraint("phase IN ('pre', 'post')", name="phase_known"),
        Index("ix_mood_entries_session", "session_id", "phase"),
    )


class MoodEntryVersion(Base):
    """A mood entry as it was before a change: who changed it and when."""

    __tablename__ = "mood_entry_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mood_entries.id", ondelete="CASCADE"))
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    change: Mapped[str] = mapped_column(Text)  # "update" or "delete"

    __table_args__ = (Index("ix_mood_entry_versions_entry", "entry_id", "version"),)


def get_entry(*, db: Session, patient_id: uuid.UUID, entry_id: uuid.UUID) -> MoodEntry:
    """A live entry of this patient, else NotFound."""
    entry = db.get(MoodEntry, entry_id)
    if entry is None or entry.patient_id != patient_id or entry.deleted_at is not None:
        raise NotFound("No such mood entry.")
    return entry
