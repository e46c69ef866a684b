"""Deliveries of outbox events to webhooks and by email: the database side, no I/O.

Life of a delivery:
1. Fan-out (a worker): each event not yet expanded gets one delivery per destination
   (subscribed webhooks, disabled ones included: they receive the backlog once back on;
   for high-priority alerts and escalations, the email of every clinician linked to the
   patient and the configured escalation addresses; for a disabled endpoint, the
   operators), and is marked expanded, in one transaction.
2. Claim: a worker leases due deliveries, first attempts before retries (``FOR UPDATE
   SKIP LOCKED`` on PostgreSQL, so N workers on N machines never hold the same one;
   SQLite serialises writers), each claim with a token of its own, and commits. Deliveries
   to a disabled endpoint are paused: never claimed, never retried, never failed.
3. Send, outside any transaction, within a deadline shorter than the lease (api.delivery).
4. Record: the attempt is stored; only the holder of the lease moves the delivery on:
   success ends it, failure schedules the next try by the back-off schedule (exponential,
   with jitter) until it is exhausted, then it is kept as failed (the dead letter).
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
    Select,
    String,
    UniqueConstraint,
    and_,
    exists,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.accounts import Role, User
from models.base import Base, utcnow, uuid_pk
from models.care import CareLink
from models.errors import Conflict, NotFound
from models.events import Event, EventType, emit_event
from models.webhooks import Webhook

# A success is written on the endpoint at most this often (a busy endpoint's row would
# otherwise take an UPDATE from every sender thread).
SUCCESS_NOTE_EVERY = timedelta(minutes=1)


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
    # Set by each claim: only the claim holding it may move the delivery on.
    lease_token: Mapped[uuid.UUID | None]
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


def paused() -> Any:
    """The delivery goes to an endpoint that is disabled now."""
    return exists().where(Webhook.id == Delivery.webhook_id, Webhook.disabled_at.is_not(None))


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
    hooks = db.scalars(select(Webhook)).all()
    patients = {e.patient_id for e in events if e.patient_id}
    clinicians = _linked_clinicians(db, patients)
    clinics = _linking_organisations(db, patients) if any(h.organisation_id for h in hooks) else {}
    admins = _admins(db) if any(e.type == EventType.webhook_disabled for e in events) else []
    rows: list[dict[str, Any]] = []
    for event in events:
        # An organisation's endpoint hears of the patients linked to that organisation only.
        receiving = [
            h
            for h in hooks
            if h.organisation_id is None or h.organisation_id in clinics.get(event.patient_id, ())
        ]
        for channel, destination, extra in _destinations(
            event, receiving, routing, clinicians.get(event.patient_id, []), admins
        ):
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
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        db.execute(insert(Delivery.__table__).on_conflict_do_nothing(), rows)
    db.flush()
    return len(events)


def _destinations(
    event: Event,
    hooks: Sequence[Webhook],
    routing: Routing,
    clinicians: list[uuid.UUID],
    admins: list[uuid.UUID],
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
    if event.type == EventType.alert_raised and event.payload.get("priority") == "high":
        users = clinicians
    elif event.type == EventType.alert_escalated:
        users, addresses = clinicians, routing.escalation_addresses
    elif event.type == EventType.webhook_disabled:
        users = admins
    found += [(Channel.email, f"user:{uid}", {"recipient_id": uid}) for uid in users]
    found += [
        (Channel.email, f"address:{address}", {"recipient_address": address})
        for address in addresses
    ]
    return found


def _linked_clinicians(
    db: Session, patient_ids: set[uuid.UUID]
) -> dict[uuid.UUID | None, list[uuid.UUID]]:
    """Each patient's clinicians linked now (active accounts), in one query."""
    found: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    if not patient_ids:
        return found
    rows = db.execute(
        select(CareLink.patient_id, CareLink.clinician_id)
        .join(User, User.id == CareLink.clinician_id)
        .where(
            CareLink.patient_id.in_(patient_ids),
            CareLink.ended_at.is_(None),
            User.disabled_at.is_(None),
        )
    )
    for patient_id, clinician_id in rows:
        found.setdefault(patient_id, []).append(clinician_id)
    return found


def _linking_organisations(
    db: Session, patient_ids: set[uuid.UUID]
) -> dict[uuid.UUID | None, set[uuid.UUID]]:
    """Each patient's organisations: those of their live care links, in one query."""
    found: dict[uuid.UUID | None, set[uuid.UUID]] = {}
    if patient_ids:
        rows = db.execute(
            select(CareLink.patient_id, CareLink.organisation_id).where(
                CareLink.patient_id.in_(patient_ids), CareLink.ended_at.is_(None)
            )
        )
        for patient_id, organisation_id in rows:
            found.setdefault(patient_id, set()).add(organisation_id)
    return found


def _admins(db: Session) -> list[uuid.UUID]:
    return list(
        db.scalars(select(User.id).where(User.role == Role.admin, User.disabled_at.is_(None)))
    )


# --------------------------------------------------------------------- claim and record


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with what its sender needs; no health data in any field."""

    delivery_id: uuid.UUID
    lease_token: uuid.UUID
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
    """Lease up to ``limit`` due deliveries to ``worker`` (the caller commits at once).

    First attempts go before retries, so a new alert never waits behind the retries of an
    endpoint that is down."""
    due = (
        select(Delivery.id)
        .where(
            Delivery.status == DeliveryStatus.pending.value,
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
            ~paused(),
        )
        .order_by(Delivery.attempts > 0, Delivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)
    )
    ids = list(db.scalars(due))
    if not ids:
        return []
    token = uuid.uuid4()
    db.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(lease_expires_at=now + lease, leased_by=worker, lease_token=token)
        .execution_options(synchronize_session=False)
    )
    rows = db.execute(
        select(Delivery, Event, Webhook, User.email)
        .join(Event, Event.id == Delivery.event_id)
        .outerjoin(Webhook, Webhook.id == Delivery.webhook_id)
        .outerjoin(User, User.id == Delivery.recipient_id)
        .where(Delivery.id.in_(ids))
    ).all()
    return [
        Claimed(
            delivery_id=delivery.id,
            lease_token=token,
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
        for delivery, event, hook, email in rows
    ]


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
    return schedule[step] * (rng or random).uniform(0.8, 1.2)


def record_outcome(
    *,
    db: Session,
    claimed: Claimed,
    outcome: Outcome,
    worker: str,
    now: datetime,
    schedule: Sequence[float],
) -> str:
    """Store the attempt and, if this claim still holds the lease, move the delivery on;
    returns the delivery's status as stored."""
    db.add(
        DeliveryAttempt(
            delivery_id=claimed.delivery_id,
            number=claimed.attempts + 1,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            response_status=outcome.response_status,
            error=outcome.error,
            worker=worker,
        )
    )
    moved = db.execute(
        update(Delivery)
        # A report that comes after the lease ran out (and maybe after another worker
        # claimed the delivery) records the attempt and changes nothing else.
        .where(
            Delivery.id == claimed.delivery_id,
            Delivery.lease_token == claimed.lease_token,
            Delivery.status == DeliveryStatus.pending,
        )
        .values(**_moved_on(claimed, outcome, now, schedule))
        .returning(Delivery.status)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if moved is None:
        return db.scalar(select(Delivery.status).where(Delivery.id == claimed.delivery_id)) or ""
    if claimed.channel == Channel.webhook:
        _note_endpoint_health(db, claimed.delivery_id, ok=outcome.ok, now=now)
    return moved


def _moved_on(
    claimed: Claimed, outcome: Outcome, now: datetime, schedule: Sequence[float]
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "attempts": Delivery.attempts + 1,
        "last_attempt_at": outcome.started_at,
        "last_response_status": outcome.response_status,
        "last_error": outcome.error,
        "lease_expires_at": None,
        "leased_by": None,
        "lease_token": None,
    }
    if outcome.ok:
        return {**values, "status": DeliveryStatus.delivered.value, "delivered_at": now}
    delay = next_delay(claimed.retry_step, schedule)
    if delay is None:
        return {**values, "status": DeliveryStatus.failed.value}
    return {
        **values,
        "next_attempt_at": now + timedelta(seconds=delay),
        "retry_step": claimed.retry_step + 1,
    }


def _note_endpoint_health(db: Session, delivery_id: uuid.UUID, *, ok: bool, now: datetime) -> None:
    hook_id = select(Delivery.webhook_id).where(Delivery.id == delivery_id).scalar_subquery()
    if ok:
        values: dict[str, Any] = {"failing_since": None, "last_success_at": now}
        condition = and_(
            Webhook.id == hook_id,
            or_(
                Webhook.failing_since.is_not(None),
                Webhook.last_success_at.is_(None),
                Webhook.last_success_at < now - SUCCESS_NOTE_EVERY,
            ),
        )
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
    """Disable endpoints that have failed without a success for ``after`` (their pending
    deliveries wait, paused, until an operator turns the endpoint back on), and tell the
    operators (``webhook.disabled``)."""
    disabled = db.execute(
        update(Webhook)
        .where(Webhook.disabled_at.is_(None), Webhook.failing_since <= now - after)
        .values(disabled_at=now, disabled_reason="failing", version=Webhook.version + 1)
        .returning(Webhook.id, Webhook.failing_since)
        .execution_options(synchronize_session=False)
    ).all()
    for hook_id, failing_since in disabled:
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


# ------------------------------------------------------------------ an endpoint's history


def deliveries_of(webhook_id: uuid.UUID, status: str | None) -> Select[Any]:
    """An endpoint's deliveries with their event types, newest first."""
    stmt = (
        select(Delivery, Event.type)
        .join(Event, Event.id == Delivery.event_id)
        .where(Delivery.webhook_id == webhook_id)
        .order_by(Delivery.created_at.desc(), Delivery.id.desc())
    )
    return stmt if status is None else stmt.where(Delivery.status == status)


def attempts_of(*, db: Session, delivery_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    """Each delivery's attempts in order, in one query."""
    found: dict[uuid.UUID, list[Any]] = {i: [] for i in delivery_ids}
    if delivery_ids:
        rows = db.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number)
        )
        for attempt in rows:
            found[attempt.delivery_id].append(attempt)
    return found


def redeliver(
    *, db: Session, hook: Webhook, delivery_id: uuid.UUID, now: datetime
) -> tuple[Delivery, str]:
    """Send a delivered or failed delivery again now, with a fresh retry schedule and the
    same event id; (delivery, event type). A pending one is on its way already (409), and
    a disabled endpoint receives nothing until it is turned back on (409)."""
    row = db.execute(
        select(Delivery, Event.type)
        .join(Event, Event.id == Delivery.event_id)
        .where(Delivery.id == delivery_id, Delivery.webhook_id == hook.id)
    ).one_or_none()
    if row is None:
        raise NotFound("No such delivery.")
    delivery, event_type = row
    if hook.disabled_at is not None:
        raise Conflict("The endpoint is disabled; turn it back on first.")
    if delivery.status == DeliveryStatus.pending:
        raise Conflict("This delivery is pending: it is sent, or retried, already.")
    delivery.status = DeliveryStatus.pending.value
    delivery.next_attempt_at = now
    delivery.retry_step = 0
    delivery.lease_expires_at = delivery.lease_token = delivery.leased_by = None
    db.flush()
    return delivery, event_type


def purge_history(*, db: Session, now: datetime, keep: timedelta) -> int:
    """Delete events older than ``keep`` whose deliveries are all done (their deliveries
    and attempts go with them); returns how many events."""
    unfinished = exists().where(
        Delivery.event_id == Event.id, Delivery.status == DeliveryStatus.pending
    )
    old = select(Event.id).where(
        Event.created_at < now - keep, Event.fanned_out_at.is_not(None), ~unfinished
    )
    ids = list(db.scalars(old.limit(1000)))
    if not ids:
        return 0
    done = select(Delivery.id).where(Delivery.event_id.in_(ids))
    db.execute(DeliveryAttempt.__table__.delete().where(DeliveryAttempt.delivery_id.in_(done)))
    db.execute(Delivery.__table__.delete().where(Delivery.event_id.in_(ids)))
    db.execute(Event.__table__.delete().where(Event.id.in_(ids)))
    return len(ids)
