"""Delivery workers' bookkeeping: who is alive, and who runs each periodic job."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base

# A worker whose heartbeat is older than this is not counted as alive.
LIVE_WITHIN = timedelta(seconds=30)


class WorkerHeartbeat(Base):
    """A delivery worker that is alive, for operators' delivery health."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]


class JobLease(Base):
    """Who runs a periodic job (escalations, reminders) until when: one worker at a time."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime]


def _insert(db: Session) -> Any:
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


def take_job_lease(*, db: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Hold the periodic job ``name`` for ``ttl`` unless another live worker holds it."""
    table = JobLease.__table__
    stmt = _insert(db)(table).values(name=name, holder=holder, expires_at=now + ttl)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": holder, "expires_at": now + ttl},
        where=or_(table.c.holder == holder, table.c.expires_at < now),
    ).returning(table.c.holder)
    return db.execute(stmt).first() is not None


def beat(*, db: Session, name: str, started_at: datetime, now: datetime) -> None:
    """Record that the worker ``name`` is alive."""
    table = WorkerHeartbeat.__table__
    stmt = _insert(db)(table).values(name=name, started_at=started_at, seen_at=now)
    db.execute(stmt.on_conflict_do_update(index_elements=[table.c.name], set_={"seen_at": now}))


def forget_worker(*, db: Session, name: str) -> None:
    """A worker that stops cleanly leaves the list of live workers."""
    table = WorkerHeartbeat.__table__
    db.execute(table.delete().where(table.c.name == name))
