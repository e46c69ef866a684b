"""Webhook endpoints, their deliveries, and delivery health: the operator's side of delivery."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from sqlalchemy import select

from api.auth import current_principal, require_auth
from api.db import get_db, settings
from api.errors import validation_error
from api.http import (
    empty_response,
    json_response,
    keyset_page,
    load_body,
    path_id,
    require_if_match,
)
from models.accounts import Role
from models.base import utcnow
from models.delivery import Delivery, DeliveryAttempt, DeliveryStatus, delivery_health, redeliver
from models.errors import NotFound
from models.events import Event
from models.webhooks import (
    Webhook,
    check_url,
    create_webhook,
    get_webhook,
    rotate_secret,
    update_webhook,
)
from schemas.webhooks import (
    DeliveryHealthOut,
    DeliveryListOut,
    DeliveryOut,
    WebhookIn,
    WebhookListOut,
    WebhookOut,
    WebhookSecretOut,
    WebhookUpdate,
)

ns = Namespace("webhooks", path="/", description="Webhooks and delivery")
_in, _update, _out, _secret_out = WebhookIn(), WebhookUpdate(), WebhookOut(), WebhookSecretOut()
_list_out, _delivery_out, _deliveries_out = WebhookListOut(), DeliveryOut(), DeliveryListOut()
_health_out = DeliveryHealthOut()
# A worker that has not beaten for this long is not listed as alive.
LIVE_WITHIN_SECONDS = 30


def _view(hook: Webhook) -> dict[str, Any]:
    return {
        **{c.key: getattr(hook, c.key) for c in Webhook.__table__.columns},
        "enabled": hook.disabled_at is None,
    }


def _check_url(url: str) -> None:
    delivery = settings().delivery
    check_url(
        url,
        require_https=settings().env == "production",
        allow_private_networks=delivery.allow_private_networks,
    )


@ns.route("/webhooks")
class Webhooks(Resource):
    @require_auth(Role.admin)
    def post(self) -> Response:
        """Register an endpoint; the signing secret is in this response only."""
        data = load_body(_in)
        _check_url(data["url"])
        db = get_db()
        hook = create_webhook(
            db=db, creator_id=current_principal().user.id, data=data, now=utcnow()
        )
        db.commit()
        body = _secret_out.dump({**_view(hook), "secret": hook.secret})
        return json_response(
            body, 201, etag=hook.etag, headers={"Location": f"{request.path}/{hook.id}"}
        )

    @require_auth(Role.admin)
    def get(self) -> Response:
        """Every endpoint, newest first."""
        stmt = select(Webhook).order_by(Webhook.created_at.desc(), Webhook.id.desc())
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(Webhook.created_at, Webhook.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
        )
        items = [_view(row[0]) for row in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/webhooks/<webhook_id>")
class WebhookItem(Resource):
    @require_auth(Role.admin)
    def get(self, webhook_id: str) -> Response:
        """One endpoint."""
        hook = get_webhook(db=get_db(), webhook_id=path_id(webhook_id))
        return json_response(_out.dump(_view(hook)), etag=hook.etag)

    @require_auth(Role.admin)
    def patch(self, webhook_id: str) -> Response:
        """Change an endpoint (If-Match); `enabled: true` turns a disabled one back on."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id))
        require_if_match(hook.etag)
        changes = load_body(_update)
        if "url" in changes:
            _check_url(changes["url"])
        update_webhook(db=db, hook=hook, changes=changes, now=utcnow())
        db.commit()
        return json_response(_out.dump(_view(hook)), etag=hook.etag)

    @require_auth(Role.admin)
    def delete(self, webhook_id: str) -> Response:
        """Remove an endpoint (If-Match) with its delivery history."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id))
        require_if_match(hook.etag)
        db.delete(hook)
        db.commit()
        return empty_response()


@ns.route("/webhooks/<webhook_id>/rotate-secret")
class WebhookRotate(Resource):
    @require_auth(Role.admin)
    def post(self, webhook_id: str) -> Response:
        """A new signing secret (shown once); the old one also signs for 24 hours."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id))
        rotate_secret(db=db, hook=hook, now=utcnow())
        db.commit()
        body = _secret_out.dump({**_view(hook), "secret": hook.secret})
        return json_response(body, etag=hook.etag)


def _delivery_views(rows: list[tuple[Delivery, str]]) -> list[dict[str, Any]]:
    """Deliveries with their attempts, in one query for the whole page."""
    ids = [delivery.id for delivery, _type in rows]
    attempts: dict[uuid.UUID, list[DeliveryAttempt]] = {i: [] for i in ids}
    if ids:
        found = get_db().scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(ids))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number)
        )
        for attempt in found:
            attempts[attempt.delivery_id].append(attempt)
    return [
        {
            **{c.key: getattr(delivery, c.key) for c in Delivery.__table__.columns},
            "event_type": event_type,
            "next_attempt_at": (
                delivery.next_attempt_at if delivery.status == DeliveryStatus.pending else None
            ),
            "attempt_log": [vars(a) for a in attempts[delivery.id]],
        }
        for delivery, event_type in rows
    ]


@ns.route("/webhooks/<webhook_id>/deliveries")
class WebhookDeliveries(Resource):
    @require_auth(Role.admin)
    def get(self, webhook_id: str) -> Response:
        """The endpoint's deliveries newest first, each with its attempts; `status` filters."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id))
        stmt = (
            select(Delivery, Event.type)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.webhook_id == hook.id)
            .order_by(Delivery.created_at.desc(), Delivery.id.desc())
        )
        status = request.args.get("status")
        if status is not None:
            if status not in {s.value for s in DeliveryStatus}:
                raise validation_error({"status": ["Must be pending, delivered or failed."]})
            stmt = stmt.where(Delivery.status == status)
        rows, next_cursor = keyset_page(
            db,
            stmt,
            keys=(Delivery.created_at, Delivery.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
        )
        items = _delivery_views([(row[0], row[1]) for row in rows])
        return json_response(_deliveries_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
class WebhookRedeliver(Resource):
    @require_auth(Role.admin)
    def post(self, webhook_id: str, delivery_id: str) -> Response:
        """Send one delivery again now, with a fresh retry schedule and the same event id."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id))
        row = db.execute(
            select(Delivery, Event.type)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.id == path_id(delivery_id), Delivery.webhook_id == hook.id)
        ).one_or_none()
        if row is None:
            raise NotFound("No such delivery.")
        delivery = redeliver(db=db, delivery=row[0], now=utcnow())
        db.commit()
        return json_response(_delivery_out.dump(_delivery_views([(delivery, row[1])])[0]), 202)


@ns.route("/delivery-health")
class DeliveryHealth(Resource):
    @require_auth(Role.admin)
    def get(self) -> Response:
        """Backlog, its age, failed deliveries, endpoints and live workers (no health data)."""
        health = delivery_health(
            db=get_db(), now=utcnow(), live_within=timedelta(seconds=LIVE_WITHIN_SECONDS)
        )
        health["email_enabled"] = settings().delivery.email_enabled
        return json_response(_health_out.dump(health))
