"""The transactional outbox: what happened that someone outside must hear about.

An event row is written in the same transaction as the change that caused it (an alert
raised, escalated or acknowledged; a reminder due; an endpoint disabled), so a change and
its event commit together or not at all. Nothing is sent from inside a request: workers
(``moodtrack worker``) expand events into deliveries and send them (models.delivery).
Payloads carry ids, codes, priorities and times only, never notes, answers, scores or names.
"""

from __future__ import annotations

import enum
import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Insert,
    String,
    bindparam,
    insert,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow, uuid_pk

# PostgreSQL wakes sleeping workers with this channel when an event commits.
NOTIFY_CHANNEL = "moodtrack_outbox"


class EventType(enum.StrEnum):
    """What an event says happened; webhooks subscribe to these."""

    alert_raised = "alert.raised"
    alert_escalated = "alert.escalated"
    alert_acknowledged = "alert.acknowledged"
    reminder_due = "reminder.due"
    webhook_disabled = "webhook.disabled"


# The types an endpoint may subscribe to (webhook.disabled goes to operators by email).
SUBSCRIBABLE = (
    EventType.alert_raised,
    EventType.alert_escalated,
    EventType.alert_acknowledged,
    EventType.reminder_due,
)


class Event(Base):
    """One outbox row; ``fanned_out_at`` is set once its deliveries exist."""

    __tablename__ = "events"

    # Stable: it is the `webhook-id` every delivery of this event carries, so a receiver
    # can drop duplicates of an at-least-once delivery.
    id: Mapped[uuid.UUID] = uuid_pk()
    type: Mapped[str] = mapped_column(String(40))
    # The patient the event is about (erasure deletes it with the patient); none for
    # operator events.
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fanned_out_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_events_waiting",
            "created_at",
            sqlite_where=text("fanned_out_at IS NULL"),
            postgresql_where=text("fanned_out_at IS NULL"),
        ),
        Index("ix_events_patient", "patient_id"),
    )


def emit_event(
    *,
    db: Session,
    type: EventType,
    patient_id: uuid.UUID | None,
    data: dict[str, Any],
    now: datetime | None = None,
) -> uuid.UUID:
    """Add an event to the caller's transaction; returns its id."""
    event_id = uuid.uuid4()
    db.execute(
        _insert_statement(),
        {
            "id": event_id,
            "type": type.value,
            "patient_id": patient_id,
            "payload": data,
            "created_at": now or utcnow(),
        },
    )
    if db.get_bind().dialect.name == "postgresql":
        # Sent at commit only (and once per transaction), so a worker never wakes early.
        db.execute(_notify_statement())
    return event_id


@functools.cache
def _insert_statement() -> Insert:
    table = Event.__table__
    return insert(table).values(
        id=bindparam("id"),
        type=bindparam("type"),
        patient_id=bindparam("patient_id"),
        payload=bindparam("payload", type_=JSON),
        created_at=bindparam("created_at", type_=table.c.created_at.type),
    )


@functools.cache
def _notify_statement() -> Any:
    return text(f"NOTIFY {NOTIFY_CHANNEL}")
