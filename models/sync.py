"""Per-patient change numbers: the cursor of offline sync.

Every change to a patient's synced records takes the next number from the patient's
counter row. The row is locked by the increment until commit, so a patient's numbers
commit in order: a reader that has seen number N has seen every change up to N, and a
sync cursor never skips a change that commits late.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ForeignKey, Table, Update, bindparam, select, update
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
    return _increment(dialect, patient="patient_id", count=bindparam("count"))


def _increment(dialect: str, *, patient: str, count: Any) -> ReturningInsert[tuple[int]]:
    """The upsert that takes ``count`` numbers from the counter of the patient bound as
    ``patient``, returning the last of them: the one statement that hands numbers out."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = SyncCounter.__table__
    stmt = insert(table).values(patient_id=bindparam(patient), last_seq=count)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.patient_id],
        set_={"last_seq": table.c.last_seq + count},
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


def insert_numbered_row(*, db: Session, table: Table, row: Mapping[str, Any]) -> int | None:
    """INSERT ``row`` (a synced record's every column) under its patient's next change
    number, unless a unique constraint keeps it out (``ON CONFLICT DO NOTHING``). Returns the
    number it was stored under, or None: then the number taken must be given back
    (``give_back_change_numbers``) if the transaction goes on."""
    connection = db.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # One round trip: the counter's increment is a data-modifying CTE of the INSERT.
        params = {k: v for k, v in row.items() if k != "change_seq"}
        params["numbered_patient_id"] = row["patient_id"]
        stored = connection.execute(_numbered_insert_statement(table), params).first()
        return None if stored is None else int(stored.change_seq)
    # SQLite has no data-modifying CTEs: two statements in the same transaction.
    number = take_change_numbers(db=db, patient_id=row["patient_id"])
    statement = _insert_ignoring_duplicates(table, dialect)
    stored = connection.execute(statement, {**row, "change_seq": number}).first()
    return None if stored is None else number


@functools.cache
def _numbered_insert_statement(table: Table) -> ReturningInsert[Any]:
    # Built once per table: every synced create runs it.
    # Not "patient_id": the INSERT below binds its own column of that name.
    taken = _increment("postgresql", patient="numbered_patient_id", count=1).cte("numbered")
    return (
        postgresql.insert(table)
        .values(change_seq=select(taken.c.last_seq).scalar_subquery())
        .add_cte(taken)
        # No conflict target: a clash on any unique constraint (the id, or the patient's
        # Idempotency-Key) inserts nothing; the counter's increment happens regardless.
        .on_conflict_do_nothing()
        .returning(table.c.change_seq)
    )


@functools.cache
def _insert_ignoring_duplicates(table: Table, dialect: str) -> ReturningInsert[Any]:
    # Built once per table and dialect; no conflict target, so a clash on any unique
    # constraint (the id, or the patient's Idempotency-Key) inserts nothing.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
