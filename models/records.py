"""What every patient-submitted record shares: local time, idempotent creation, soft delete."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import ForeignKey, String, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column

from models.base import utcnow
from models.errors import Conflict
from models.sync import give_back_change_numbers, insert_numbered_row

R = TypeVar("R", bound="IdempotentRecord")


def utc_offset_minutes(instant: datetime) -> int:
    """The offset the client sent with an instant, in minutes east of UTC."""
    offset = instant.utcoffset()
    if offset is None:
        raise ValueError("naive datetime")
    return int(offset.total_seconds() // 60)


def local_date_of(instant: datetime) -> date:
    """The calendar date of an instant in the offset it was sent with (analytics.md)."""
    return instant.date()


def local_instant(utc_instant: datetime, offset_minutes: int) -> datetime:
    """A stored UTC instant shown again in the client's own offset."""
    return utc_instant.astimezone(timezone(timedelta(minutes=offset_minutes)))


def fingerprint(data: Mapping[str, Any]) -> str:
    """A digest of a create request's validated content, to tell a replay from a clash."""

    def canonical(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, uuid.UUID | date):
            return str(value)
        return value

    text = json.dumps({k: canonical(v) for k, v in data.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class IdempotentRecord:
    """Columns of a record about a patient that a client creates idempotently: a
    client-chosen id, the digest of the body it was created with, and the Idempotency-Key
    it came with (unique per patient: the table declares the constraint)."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))

    @declared_attr
    def patient_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class ClientRecord(IdempotentRecord):
    """Columns of any record about a patient that a client creates and may change later:
    idempotent creation, optimistic versions, soft deletion."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # UPDATE ... WHERE version = <read version>: of two racing edits, one fails (412).
        return {"version_id_col": cls.version}

    @declared_attr
    def created_by_id(cls) -> Mapped[uuid.UUID | None]:
        return mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    @property
    def etag(self) -> str:
        """Strong entity tag of the current version."""
        return f'"{self.version}"'


class PatientRecord(ClientRecord):
    """A record of something the patient felt or answered at an instant."""

    occurred_at: Mapped[datetime]
    utc_offset_minutes: Mapped[int]
    # The patient's local date, stored so SQL can group by it on any database.
    local_date: Mapped[date]

    def set_occurred_at(self, instant: datetime) -> None:
        """Store the instant in UTC with the client's offset and local date beside it."""
        self.occurred_at = instant.astimezone(UTC)
        self.utc_offset_minutes = utc_offset_minutes(instant)
        self.local_date = local_date_of(instant)

    @property
    def occurred_at_local(self) -> datetime:
        """occurred_at in the offset the client sent."""
        return local_instant(self.occurred_at, self.utc_offset_minutes)


def find_replay(
    *,
    db: Session,
    model: type[R],
    patient_id: uuid.UUID,
    record_id: uuid.UUID | None,
    idempotency_key: str | None,
) -> R | None:
    """An earlier create with the same client id or Idempotency-Key, if any."""
    from sqlalchemy import select

    if record_id is not None:
        found = db.get(model, record_id)
        if found is not None:
            return found
    if idempotency_key is not None:
        return db.scalars(
            select(model).where(
                model.patient_id == patient_id,  # type: ignore[attr-defined]
                model.idempotency_key == idempotency_key,  # type: ignore[attr-defined]
            )
        ).one_or_none()
    return None


def check_replay(existing: IdempotentRecord, *, patient_id: uuid.UUID, digest: str) -> None:
    """A replay must repeat the same body for the same patient; anything else is 409."""
    if existing.patient_id != patient_id or existing.fingerprint != digest:
        raise Conflict("This id or Idempotency-Key was already used with a different body.")


def insert_once(
    *,
    db: Session,
    record: R,
    idempotency_key: str | None,
    before_insert: Callable[[], None] | None = None,
) -> tuple[R, bool]:
    """Insert ``record`` unless an identical create already stored it.

    Returns (stored record, created?). A unique constraint decides, not a read-then-write
    check, so concurrent identical creates leave exactly one row: the loser's savepoint is
    rolled back and it answers with the winner's record.
    """
    patient_id = record.patient_id
    model = type(record)
    # No look-up first: replays are rare, and the constraint answers them on the way in.
    try:
        with db.begin_nested():
            if before_insert is not None:
                before_insert()
            db.add(record)
            db.flush()
    except IntegrityError:
        existing = find_replay(
            db=db,
            model=model,
            patient_id=patient_id,
            record_id=record.id,
            idempotency_key=idempotency_key,
        )
        if existing is None:
            raise
        check_replay(existing, patient_id=patient_id, digest=record.fingerprint)
        return existing, False
    return record, True


def insert_synced_row_once(
    *, db: Session, record: R, row: Mapping[str, Any], idempotency_key: str | None
) -> tuple[R, bool]:
    """``insert_once`` for a synced record given as its complete ``row``, stored under its
    patient's next change number (``record.change_seq`` is set).

    ``INSERT ... ON CONFLICT DO NOTHING``: the unique constraints still decide, so of
    concurrent identical creates exactly one row is stored; a loser's insert waits for the
    winner's commit, does nothing, gives its change number back, and answers with the
    winner's record. No savepoint around it (two round trips fewer than ``insert_once``).
    ``record`` is not added to the session: it is what was stored, for the caller to read.
    """
    table: Table = type(record).__table__  # type: ignore[attr-defined]
    number = insert_numbered_row(db=db, table=table, row=row)
    if number is not None:
        record.change_seq = number  # type: ignore[attr-defined]
        return record, True
    # A replay stores nothing: its number goes back, so a patient's numbers stay consecutive.
    give_back_change_numbers(db=db, patient_id=record.patient_id)
    existing = find_replay(
        db=db,
        model=type(record),
        patient_id=record.patient_id,
        record_id=record.id,
        idempotency_key=idempotency_key,
    )
    if existing is None:
        # The row it clashed with is gone already (its account was erased meanwhile).
        raise Conflict("This id or Idempotency-Key was just used; try again.")
    check_replay(existing, patient_id=record.patient_id, digest=record.fingerprint)
    return existing, False
