"""Deliveries of outbox events to webhooks and by email: the database side, no I/O.

Life of a delivery:
1. Fan-out (a worker): each event not yet expanded gets one delivery per destination
   (subscribed webhooks; for high-priority alerts and escalations, the email of every
   clinician linked to the patient and the configured escalation addresses; for a disabled
   endpoint, the operators), and is marked expanded, in one transaction.
2. Claim: a worker leases due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so N
   workers on N machines never hold the same one; SQLite serialises writers) and commits.
3. Send, outside any transaction (api.delivery).
4. Record: the attempt is stored; success ends the delivery, failure schedules the next
   try by the back-off schedule (exponential, with jitter) until it is exhausted (at least
   24 hours), then the delivery is kept as failed (the dead letter).
A worker killed between 2 and 4 loses nothing: its lease runs out and another worker sends
the delivery again. Delivery is at least once; the event id lets receivers drop repeats.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User
from models.base import Base, utcnow, uuid_pk
from models.care import CareLink
from models.events import Event, EventType, emit_event
from models.webhooks import Webhook


class Channel(enum.StrEnum):
    """How a delivery leaves the service."""

    webhook = "webhook"
    email = "email"


class DeliveryStatus(enum.StrEnum):
    """pending until delivered, or failed once the retry schedule is exhausted."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class Delivery(Base):
    """One event to one destination, tried until delivered or failed."""

    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = uuid_pk()
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    # "webhook:<id>", "user:<id>" or "address:<email>": one delivery per event and
    # destination, even if a fan-out were repeated.
    destination: Mapped[str] = mapped_column(String(400))
    webhook_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE")
    )
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE")
    )
    recipient_address: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.pending.value)
    attempts: Mapped[int] = mapped_column(default=0)
    # Position in the retry schedule; a redelivery starts it again.
    retry_step: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("event_id", "destination"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_webhook", "webhook_id", "created_at"),
    )


class DeliveryAttempt(Base):
    """One try of a delivery: when, how long, and what came back (never a body)."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    number: Mapped[int]
    started_at: Mapped[datetime]
    duration_ms: Mapped[int]
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    worker: Mapped[str] = mapped_column(String(120))

    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "number"),)


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


# ------------------------------------------------------------------------- fan-out


@dataclass(frozen=True)
class Routing:
    """Who gets which events besides subscribed webhooks (from configuration)."""

    email_enabled: bool
    escalation_addresses: tuple[str, ...] = ()


def fan_out(*, db: Session, now: datetime, routing: Routing, limit: int = 100) -> int:
    """Expand up to ``limit`` waiting events into deliveries; returns how many events."""
    events = db.scalars(
        select(Event)
        .where(Event.fanned_out_at.is_(None))
        .order_by(Event.created_at, Event.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not events:
        return 0
    hooks = db.scalars(select(Webhook).where(Webhook.disabled_at.is_(None))).all()
    rows: list[dict[str, Any]] = []
    for event in events:
        for channel, destination, extra in _destinations(db, event, hooks, routing):
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "event_id": event.id,
                    "channel": channel.value,
                    "destination": destination,
                    "status": DeliveryStatus.pending.value,
                    "attempts": 0,
                    "retry_step": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "webhook_id": None,
                    "recipient_id": None,
                    "recipient_address": None,
                    **extra,
                }
            )
        event.fanned_out_at = now
    if rows:
        db.execute(_insert_deliveries(db.get_bind().dialect.name), rows)
    db.flush()
    return len(events)


def _insert_deliveries(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(Delivery.__table__).on_conflict_do_nothing()


def _destinations(
    db: Session, event: Event, hooks: Sequence[Webhook], routing: Routing
) -> list[tuple[Channel, str, dict[str, Any]]]:
    found = [
        (Channel.webhook, f"webhook:{hook.id}", {"webhook_id": hook.id})
        for hook in hooks
        if event.type in hook.event_types
    ]
    if not routing.email_enabled:
        return found
    users: list[uuid.UUID] = []
    addresses: tuple[str, ...] = ()
    high = event.payload.get("priority") == "high"
    if event.type == EventType.alert_raised and high and event.patient_id is not None:
        users = _linked_clinicians(db, event.patient_id)
    elif event.type == EventType.alert_escalated and event.patient_id is not None:
        users = _linked_clinicians(db, event.patient_id)
        addresses = routing.escalation_addresses
    elif event.type == EventType.webhook_disabled:
        users = list(
            db.scalars(select(User.id).where(User.role == Role.admin, User.disabled_at.is_(None)))
        )
    found += [(Channel.email, f"user:{uid}", {"recipient_id": uid}) for uid in users]
    found += [
        (Channel.email, f"address:{address}", {"recipient_address": address})
        for address in addresses
    ]
    return found


def _linked_clinicians(db: Session, patient_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        db.scalars(
            select(CareLink.clinician_id)
            .join(User, User.id == CareLink.clinician_id)
            .where(
                CareLink.patient_id == patient_id,
                CareLink.ended_at.is_(None),
                User.disabled_at.is_(None),
            )
        )
    )


# --------------------------------------------------------------------- claim and record


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with what its sender needs; no health data in any field."""

    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    event_created_at: datetime
    payload: dict[str, Any]
    channel: str
    attempts: int
    retry_step: int
    url: str | None = None
    secrets: tuple[str, ...] = ()
    email: str | None = None


def claim_deliveries(
    *, db: Session, now: datetime, worker: str, lease: timedelta, limit: int
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to ``worker`` (the caller commits at once)."""
    due = (
        select(Delivery.id)
        .where(
            Delivery.status == DeliveryStatus.pending.value,
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.scalars(due))
    if not ids:
        return []
    db.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(lease_expires_at=now + lease, leased_by=worker)
        .execution_options(synchronize_session=False)
    )
    rows = db.execute(
        select(Delivery, Event, Webhook, User.email)
        .join(Event, Event.id == Delivery.event_id)
        .outerjoin(Webhook, Webhook.id == Delivery.webhook_id)
        .outerjoin(User, User.id == Delivery.recipient_id)
        .where(Delivery.id.in_(ids))
    ).all()
    return [_claimed(delivery, event, hook, email, now) for delivery, event, hook, email in rows]


def _claimed(
    delivery: Delivery, event: Event, hook: Webhook | None, email: str | None, now: datetime
) -> Claimed:
    return Claimed(
        delivery_id=delivery.id,
        event_id=event.id,
        event_type=event.type,
        event_created_at=event.created_at,
        payload=dict(event.payload),
        channel=delivery.channel,
        attempts=delivery.attempts,
        retry_step=delivery.retry_step,
        url=hook.url if hook is not None else None,
        secrets=tuple(hook.signing_secrets(now)) if hook is not None else (),
        email=email or delivery.recipient_address,
    )


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    ok: bool
    started_at: datetime
    duration_ms: int
    response_status: int | None = None
    error: str | None = None


def next_delay(
    step: int, schedule: Sequence[float], rng: random.Random | None = None
) -> float | None:
    """Seconds before retry number ``step + 1`` (±20 % jitter), or None when exhausted."""
    if step >= len(schedule):
        return None
    jitter = (rng or random).uniform(0.8, 1.2)
    return schedule[step] * jitter


def record_outcome(
    *,
    db: Session,
    claimed: Claimed,
    outcome: Outcome,
    worker: str,
    now: datetime,
    schedule: Sequence[float],
) -> str:
    """Store the attempt and move the delivery on; returns its new status."""
    number = claimed.attempts + 1
    db.add(
        DeliveryAttempt(
            delivery_id=claimed.delivery_id,
            number=number,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            response_status=outcome.response_status,
            error=outcome.error,
            worker=worker,
        )
    )
    values: dict[str, Any] = {
        "attempts": number,
        "last_attempt_at": outcome.started_at,
        "last_response_status": outcome.response_status,
        "last_error": outcome.error,
        "lease_expires_at": None,
        "leased_by": None,
    }
    if outcome.ok:
        status = DeliveryStatus.delivered
        values.update(delivered_at=now)
    else:
        delay = next_delay(claimed.retry_step, schedule)
        if delay is None:
            status = DeliveryStatus.failed
        else:
            status = DeliveryStatus.pending
            values.update(
                next_attempt_at=now + timedelta(seconds=delay), retry_step=claimed.retry_step + 1
            )
    values["status"] = status.value
    # Only a pending delivery moves on: a late report from a worker whose lease ran out
    # cannot undo what another worker recorded since.
    db.execute(
        update(Delivery)
        .where(Delivery.id == claimed.delivery_id, Delivery.status == DeliveryStatus.pending)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if claimed.channel == Channel.webhook:
        _note_endpoint_health(db, claimed.delivery_id, ok=outcome.ok, now=now)
    return status.value


def _note_endpoint_health(db: Session, delivery_id: uuid.UUID, *, ok: bool, now: datetime) -> None:
    hook_id = select(Delivery.webhook_id).where(Delivery.id == delivery_id).scalar_subquery()
    if ok:
        values: dict[str, Any] = {"failing_since": None, "last_success_at": now}
        condition = Webhook.id == hook_id
    else:
        values = {"failing_since": now}
        condition = and_(Webhook.id == hook_id, Webhook.failing_since.is_(None))
    db.execute(
        update(Webhook)
        .where(condition)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def disable_failing_webhooks(*, db: Session, now: datetime, after: timedelta) -> int:
    """Disable endpoints that have failed without a success for ``after``; their pending
    deliveries fail with them, and operators hear of it (``webhook.disabled``)."""
    disabled = db.execute(
        update(Webhook)
        .where(Webhook.disabled_at.is_(None), Webhook.failing_since <= now - after)
        .values(disabled_at=now, disabled_reason="failing", version=Webhook.version + 1)
        .returning(Webhook.id, Webhook.failing_since)
        .execution_options(synchronize_session=False)
    ).all()
    for hook_id, failing_since in disabled:
        db.execute(
            update(Delivery)
            .where(Delivery.webhook_id == hook_id, Delivery.status == DeliveryStatus.pending)
            .values(status=DeliveryStatus.failed.value, last_error="endpoint disabled")
            .execution_options(synchronize_session=False)
        )
        emit_event(
            db=db,
            type=EventType.webhook_disabled,
            patient_id=None,
            data={
                "webhook_id": str(hook_id),
                "failing_since": failing_since.isoformat(),
                "disabled_at": now.isoformat(),
            },
            now=now,
        )
    return len(disabled)


def redeliver(*, db: Session, delivery: Delivery, now: datetime) -> Delivery:
    """Send a delivery again now, with a fresh retry schedule (same event id)."""
    delivery.status = DeliveryStatus.pending.value
    delivery.next_attempt_at = now
    delivery.retry_step = 0
    delivery.lease_expires_at = None
    delivery.leased_by = None
    db.flush()
    return delivery


# ------------------------------------------------------------------------- workers


def take_job_lease(*, db: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Hold the periodic job ``name`` for ``ttl`` unless another live worker holds it."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = JobLease.__table__
    stmt = insert(table).values(name=name, holder=holder, expires_at=now + ttl)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"holder": holder, "expires_at": now + ttl},
        where=or_(table.c.holder == holder, table.c.expires_at < now),
    ).returning(table.c.holder)
    return db.execute(stmt).first() is not None


def beat(*, db: Session, name: str, started_at: datetime, now: datetime) -> None:
    """Record that the worker ``name`` is alive."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = WorkerHeartbeat.__table__
    stmt = insert(table).values(name=name, started_at=started_at, seen_at=now)
    db.execute(stmt.on_conflict_do_update(index_elements=[table.c.name], set_={"seen_at": now}))


def forget_worker(*, db: Session, name: str) -> None:
    """A worker that stops cleanly leaves the list of live workers."""
    db.execute(WorkerHeartbeat.__table__.delete().where(WorkerHeartbeat.__table__.c.name == name))


# ------------------------------------------------------------------------- health


def delivery_health(*, db: Session, now: datetime, live_within: timedelta) -> dict[str, Any]:
    """Counts and ages operators watch; no ids of patients, no payloads."""
    waiting = db.execute(
        select(func.count(), func.min(Event.created_at)).where(Event.fanned_out_at.is_(None))
    ).one()
    pending = db.execute(
        select(
            func.count(),
            func.min(Delivery.created_at),
            func.count().filter(Delivery.attempts > 0),
        ).where(Delivery.status == DeliveryStatus.pending)
    ).one()
    day_ago = now - timedelta(days=1)
    failed = db.execute(
        select(
            func.count(),
            func.count().filter(Delivery.last_attempt_at >= day_ago),
        ).where(Delivery.status == DeliveryStatus.failed)
    ).one()
    delivered_last_hour = db.scalar(
        select(func.count()).where(
            Delivery.status == DeliveryStatus.delivered,
            Delivery.delivered_at >= now - timedelta(hours=1),
        )
    )
    hooks = db.execute(
        select(
            func.count(),
            func.count().filter(Webhook.disabled_at.is_not(None)),
            func.count().filter(Webhook.failing_since.is_not(None)),
        )
    ).one()
    workers = db.scalars(
        select(WorkerHeartbeat)
        .where(WorkerHeartbeat.seen_at >= now - live_within)
        .order_by(WorkerHeartbeat.name)
    ).all()

    def age(oldest: datetime | None) -> float | None:
        return None if oldest is None else round((now - oldest).total_seconds(), 3)

    return {
        "checked_at": now,
        "events_waiting": waiting[0],
        "oldest_waiting_event_age_seconds": age(waiting[1]),
        "deliveries_pending": pending[0],
        "oldest_pending_delivery_age_seconds": age(pending[1]),
        "deliveries_retrying": pending[2],
        "deliveries_failed": failed[0],
        "deliveries_failed_last_24h": failed[1],
        "deliveries_delivered_last_hour": delivered_last_hour or 0,
        "webhooks": hooks[0],
        "webhooks_disabled": hooks[1],
        "webhooks_failing": hooks[2],
        "workers": [
            {"name": w.name, "started_at": w.started_at, "seen_at": w.seen_at} for w in workers
        ],
    }
