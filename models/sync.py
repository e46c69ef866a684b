"""Per-patient change numbers: the cursor of offline sync.

Every change to a patient's synced records takes the next number from the patient's
counter row. The row is locked by the increment until commit, so a patient's numbers
commit in order: a reader that has seen number N has seen every change up to N, and a
sync cursor never skips a change that commits late.
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import ForeignKey, Update, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.dml import ReturningInsert

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
    stmt = _take_statement(db.get_bind().dialect.name)
    return int(db.execute(stmt, {"patient_id": patient_id, "count": count}).scalar_one())


def give_back_change_numbers(*, db: Session, patient_id: uuid.UUID, count: int = 1) -> None:
    """Return the last ``count`` numbers this transaction took, when its change came to
    nothing (a replayed create). Safe only in the transaction that took them: its increment
    still locks the counter row, so no one else has taken a number since."""
    db.execute(_give_back_statement(), {"for_patient": patient_id, "count": count})


@functools.cache
def _take_statement(dialect: str) -> ReturningInsert[tuple[int]]:
    # Built once per dialect: every write runs it, and building it costs more than running it.
    # On the table, not the entity: the ORM's bulk-insert path around an entity's INSERT
    # costs more than the statement itself.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = SyncCounter.__table__
    stmt = insert(table).values(patient_id=bindparam("patient_id"), last_seq=bindparam("count"))
    return stmt.on_conflict_do_update(
        index_elements=[table.c.patient_id],
        set_={"last_seq": table.c.last_seq + bindparam("count")},
    ).returning(table.c.last_seq)


@functools.cache
def _give_back_statement() -> Update:
    table = SyncCounter.__table__
    return (
        update(table)
        # Not "patient_id": an UPDATE keeps its columns' names for the SET clause.
        .where(table.c.patient_id == bindparam("for_patient"))
        .values(last_seq=table.c.last_seq - bindparam("count"))
    )
