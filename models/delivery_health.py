"""What operators watch of delivery: counts and ages, never a patient or a payload."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.delivery import Delivery, DeliveryStatus, paused
from models.events import Event
from models.webhooks import Webhook
from models.workers import LIVE_WITHIN, WorkerHeartbeat


def delivery_health(*, db: Session, now: datetime) -> dict[str, Any]:
    """Backlog and the age of its oldest item, retries, dead letters, endpoints, workers."""
    waiting = db.execute(
        select(func.count(), func.min(Event.created_at)).where(Event.fanned_out_at.is_(None))
    ).one()
    pending = Delivery.status == DeliveryStatus.pending
    due = db.execute(
        select(
            func.count(),
            func.min(Delivery.created_at),
            func.count().filter(Delivery.attempts > 0),
        ).where(pending, ~paused())
    ).one()
    held = db.scalar(select(func.count()).where(pending, paused()))
    failed = db.execute(
        select(
            func.count(), func.count().filter(Delivery.last_attempt_at >= now - timedelta(1))
        ).where(Delivery.status == DeliveryStatus.failed)
    ).one()
    delivered = db.scalar(
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
        .where(WorkerHeartbeat.seen_at >= now - LIVE_WITHIN)
        .order_by(WorkerHeartbeat.name)
    ).all()

    def age(oldest: datetime | None) -> float | None:
        return None if oldest is None else round((now - oldest).total_seconds(), 3)

    return {
        "checked_at": now,
        "events_waiting": waiting[0],
        "oldest_waiting_event_age_seconds": age(waiting[1]),
        "deliveries_pending": due[0],
        "oldest_pending_delivery_age_seconds": age(due[1]),
        "deliveries_retrying": due[2],
        "deliveries_paused": held or 0,
        "deliveries_failed": failed[0],
        "deliveries_failed_last_24h": failed[1],
        "deliveries_delivered_last_hour": delivered or 0,
        "webhooks": hooks[0],
        "webhooks_disabled": hooks[1],
        "webhooks_failing": hooks[2],
        "workers": [
            {"name": w.name, "started_at": w.started_at, "seen_at": w.seen_at} for w in workers
        ],
    }
