"""Per-patient change numbers: the cursor of offline sync.

Every change to a patient's synced records takes the next number from the patient's
counter row. The row is locked by the increment until commit, so a patient's numbers
commit in order: a reader that has seen number N has seen every change up to N, and a
sync cursor never skips a change that commits late.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base


class SyncCounter(Base):
    """The last change number handed out for one patient."""

    __tablename__ = "sync_counters"

    patient_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(default=0)


def take_change_numbers(*, db: Session, patient_id: uuid.UUID, count: int = 1) -> int:
    """Reserve ``count`` consecutive change numbers; returns the last of them."""
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(SyncCounter).values(patient_id=patient_id, last_seq=count)
    stmt = stmt.on_conflict_do_update(
        index_elements=[SyncCounter.patient_id],
        set_={"last_seq": SyncCounter.last_seq + count},
    ).returning(SyncCounter.last_seq)
    return int(db.execute(stmt).scalar_one())
