"""The audit trail: who read or changed whose data, when, from where, with what outcome.

Audit rows never hold a user id, in any column. They hold pseudonyms, and ``audit_subjects``
maps each user to theirs: the actor, the patient, and the resource when the resource is an
account (a sign-up, an admin's change to a staff account). Erasing a user deletes the
mapping (by cascade), which pseudonymises every audit row about them without updating a
single one: the application only ever INSERTs into ``audit_events`` (on PostgreSQL a role
without UPDATE or DELETE enforces it).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    ForeignKey,
    Index,
    String,
    bindparam,
    false,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import User
from models.base import Base, utcnow


class AuditSubject(Base):
    """The pseudonym that stands for one user in the audit trail."""

    __tablename__ = "audit_subjects"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    pseudonym: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)


class AuditEvent(Base):
    """One audited action. Append-only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(sqlite.INTEGER(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[uuid.UUID | None] = mapped_column(comment="pseudonym of the acting user")
    actor_role: Mapped[str | None] = mapped_column(String(16))
    patient: Mapped[uuid.UUID | None] = mapped_column(comment="pseudonym of the patient")
    action: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(48))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    # The actor reached the patient through an emergency access, not a care link.
    emergency: Mapped[bool] = mapped_column(default=False, server_default=false())

    __table_args__ = (
        Index("ix_audit_events_patient_at", "patient", "at"),
        Index("ix_audit_events_actor_at", "actor", "at"),
        Index("ix_audit_events_at", "at"),
    )


def _pseudonym_of(parameter: str) -> Any:
    return (
        select(AuditSubject.pseudonym)
        .where(AuditSubject.user_id == bindparam(parameter))
        .scalar_subquery()
    )


# Real ids go in as parameters and come out as pseudonyms: the row holds whatever
# audit_subjects maps them to at that moment, or NULL for a user with no mapping (erased).
_INSERT_EVENT = insert(AuditEvent.__table__).values(
    actor=_pseudonym_of("actor_id"), patient=_pseudonym_of("patient_id")
)


@dataclass(frozen=True)
class Entry:
    """What to record; user ids here are real ids, turned into pseudonyms on write.

    ``resource_user_id`` is set instead of ``resource_id`` when the resource is an account:
    the row then names it by its pseudonym, like the actor and the patient.
    """

    action: str
    resource_type: str
    resource_id: str | None
    outcome: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    patient_id: uuid.UUID | None
    request_id: str | None
    client_address: str | None
    resource_user_id: uuid.UUID | None = None
    emergency: bool = False


# Users known to have a committed pseudonym, per database. The INSERT of an audit row reads
# the pseudonym itself (a subquery on audit_subjects), so the cache never holds a pseudonym:
# only the knowledge that the mapping exists, to skip the step that creates it. A mapping
# created by this transaction is not remembered (it might roll back); erasure deletes the
# mapping, after which every new row's subquery finds nothing and names nobody, whatever
# any process remembers.
_MAPPED: weakref.WeakKeyDictionary[Engine, set[uuid.UUID]] = weakref.WeakKeyDictionary()
_MAPPED_LIMIT = 100_000


def _mapped(db: Session) -> set[uuid.UUID]:
    return _MAPPED.setdefault(db.get_bind().engine, set())


def forget_pseudonym(*, db: Session, user_id: uuid.UUID) -> None:
    """Forget that a user has a pseudonym (erasure deletes the mapping row by cascade)."""
    _mapped(db).discard(user_id)


def ensure_pseudonyms(*, db: Session, user_ids: Iterable[uuid.UUID]) -> None:
    """Give each existing user a pseudonym if they have none yet (race-safe upsert).

    No query when every user is known to have one, the usual case.
    """
    mapped = _mapped(db)
    wanted = set(user_ids) - mapped
    if not wanted:
        return
    # Only users that still exist get a pseudonym: the erase event of an account is
    # recorded after its rows are gone, and then names nobody.
    rows = db.execute(
        select(User.id, AuditSubject.pseudonym)
        .outerjoin(AuditSubject, AuditSubject.user_id == User.id)
        .where(User.id.in_(wanted))
    ).all()
    if len(mapped) > _MAPPED_LIMIT:
        mapped.clear()
    mapped.update(user_id for user_id, pseudonym in rows if pseudonym is not None)
    missing = sorted(user_id for user_id, pseudonym in rows if pseudonym is None)
    if missing:
        dialect = db.get_bind().dialect.name
        insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
        db.execute(
            insert_into(AuditSubject)
            .values([{"user_id": u, "pseudonym": uuid.uuid4()} for u in missing])
            .on_conflict_do_nothing(index_elements=[AuditSubject.user_id])
        )


def _account_pseudonyms(*, db: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The pseudonyms of accounts that are the resource of a row, as text. Read each time
    (no process remembers a pseudonym); only sign-ups and staff administration ask."""
    if not user_ids:
        return {}
    rows = db.execute(
        select(AuditSubject.user_id, AuditSubject.pseudonym).where(
            AuditSubject.user_id.in_(user_ids)
        )
    ).all()
    return {user_id: str(pseudonym) for user_id, pseudonym in rows}


def record(*, db: Session, entries: Iterable[Entry]) -> None:
    """Add audit rows to the caller's transaction (the caller commits)."""
    entries = list(entries)
    if not entries:
        return
    accounts = {e.resource_user_id for e in entries if e.resource_user_id}
    ids = (
        {e.actor_id for e in entries if e.actor_id}
        | {e.patient_id for e in entries if e.patient_id}
        | accounts
    )
    ensure_pseudonyms(db=db, user_ids=ids)  # type: ignore[arg-type]
    named = _account_pseudonyms(db=db, user_ids=accounts)
    now = utcnow()
    rows = [
        dict(
            at=now,
            actor_id=e.actor_id,
            actor_role=e.actor_role,
            patient_id=e.patient_id,
            action=e.action,
            resource_type=e.resource_type,
            # An account is named by its pseudonym (none once erased), never by its id.
            resource_id=e.resource_id
            if e.resource_user_id is None
            else named.get(e.resource_user_id),
            outcome=e.outcome,
            request_id=e.request_id,
            client_address=e.client_address,
            emergency=e.emergency,
        )
        for e in entries
    ]
    # On the table, not the entity: the ORM's bulk-insert path costs more than the INSERT.
    # One executemany whatever the number of rows (a cohort page records 100); a single
    # row, the usual case, as a plain execute (psycopg runs executemany in a pipeline).
    db.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
