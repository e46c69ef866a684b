"""Webhook endpoints, their deliveries, and delivery health: the operator's side of delivery."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth
from api.db import get_db, settings
from api.errors import ApiError, validation_error
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
from models.delivery import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    attempts_of,
    deliveries_of,
    redeliver,
)
from models.delivery_health import delivery_health
from models.organisations import administered_organisations
from models.webhooks import (
    Webhook,
    check_url,
    create_webhook,
    get_webhook,
    rotate_secret,
    update_webhook,
    webhooks_of,
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


def _view(hook: Webhook) -> dict[str, Any]:
    return {
        **{c.key: getattr(hook, c.key) for c in Webhook.__table__.columns},
        "enabled": hook.disabled_at is None,
    }


def _managed() -> list[uuid.UUID] | None:
    """The organisations whose endpoints the caller manages: None for the operator (every
    endpoint); an org admin, those they administer; anyone else may not (403)."""
    principal = current_principal()
    if principal.role == Role.admin:
        return None
    organisations = administered_organisations(db=get_db(), user_id=principal.user.id)
    if not organisations:
        raise ApiError(403, "Only operators and org admins manage webhooks.", slug="forbidden")
    return organisations


def _owner(requested: uuid.UUID | None, managed: list[uuid.UUID] | None) -> uuid.UUID | None:
    """The organisation a new endpoint belongs to: the operator's choice (none: every
    patient's events); an org admin's own organisation (the one given, or their only one)."""
    if managed is None:
        return requested
    if requested is None and len(managed) == 1:
        return managed[0]
    if requested not in managed:
        raise validation_error(
            {"organisation_id": ["Give an organisation whose endpoints you manage."]}
        )
    return requested


def _check_url(url: str) -> None:
    delivery = settings().delivery
    check_url(
        url,
        require_https=settings().env == "production",
        allow_private_networks=delivery.allow_private_networks,
    )


@ns.route("/webhooks")
class Webhooks(Resource):
    @require_auth(Role.admin, Role.clinician)
    def post(self) -> Response:
        """Register an endpoint (operators; org admins for their organisation); the signing
        secret is in this response only."""
        managed = _managed()
        data = load_body(_in)
        owner = _owner(data.pop("organisation_id", None), managed)
        _check_url(data["url"])
        db = get_db()
        hook = create_webhook(
            db=db,
            creator_id=current_principal().user.id,
            organisation_id=owner,
            data=data,
            now=utcnow(),
        )
        db.commit()
        body = _secret_out.dump({**_view(hook), "secret": hook.secret})
        return json_response(
            body, 201, etag=hook.etag, headers={"Location": f"{request.path}/{hook.id}"}
        )

    @require_auth(Role.admin, Role.clinician)
    def get(self) -> Response:
        """The endpoints the caller manages, newest first."""
        rows, next_cursor = keyset_page(
            get_db(),
            webhooks_of(_managed()),
            keys=(Webhook.created_at, Webhook.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
        )
        items = [_view(row[0]) for row in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/webhooks/<webhook_id>")
class WebhookItem(Resource):
    @require_auth(Role.admin, Role.clinician)
    def get(self, webhook_id: str) -> Response:
        """One endpoint."""
        hook = get_webhook(db=get_db(), webhook_id=path_id(webhook_id), organisations=_managed())
        return json_response(_out.dump(_view(hook)), etag=hook.etag)

    @require_auth(Role.admin, Role.clinician)
    def patch(self, webhook_id: str) -> Response:
        """Change an endpoint (If-Match); `enabled: true` turns a disabled one back on."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        require_if_match(hook.etag)
        changes = load_body(_update)
        if "url" in changes:
            _check_url(changes["url"])
        update_webhook(db=db, hook=hook, changes=changes, now=utcnow())
        db.commit()
        return json_response(_out.dump(_view(hook)), etag=hook.etag)

    @require_auth(Role.admin, Role.clinician)
    def delete(self, webhook_id: str) -> Response:
        """Remove an endpoint (If-Match) with its delivery history."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        require_if_match(hook.etag)
        db.delete(hook)
        db.commit()
        return empty_response()


@ns.route("/webhooks/<webhook_id>/rotate-secret")
class WebhookRotate(Resource):
    @require_auth(Role.admin, Role.clinician)
    def post(self, webhook_id: str) -> Response:
        """A new signing secret (shown once); the old one also signs for 24 hours."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        rotate_secret(db=db, hook=hook, now=utcnow())
        db.commit()
        body = _secret_out.dump({**_view(hook), "secret": hook.secret})
        return json_response(body, etag=hook.etag)


def _delivery_views(rows: list[tuple[Delivery, str]]) -> list[dict[str, Any]]:
    """Deliveries with their attempts (one query for the whole page)."""
    attempts = attempts_of(db=get_db(), delivery_ids=[delivery.id for delivery, _ in rows])
    return [
        {
            **{c.key: getattr(delivery, c.key) for c in Delivery.__table__.columns},
            "event_type": event_type,
            "next_attempt_at": (
                delivery.next_attempt_at if delivery.status == DeliveryStatus.pending else None
            ),
            "attempt_log": [
                {c.key: getattr(a, c.key) for c in DeliveryAttempt.__table__.columns}
                for a in attempts[delivery.id]
            ],
        }
        for delivery, event_type in rows
    ]


@ns.route("/webhooks/<webhook_id>/deliveries")
class WebhookDeliveries(Resource):
    @require_auth(Role.admin, Role.clinician)
    def get(self, webhook_id: str) -> Response:
        """The endpoint's deliveries newest first, each with its attempts; `status` filters."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        status = request.args.get("status")
        if status is not None and status not in {s.value for s in DeliveryStatus}:
            raise validation_error({"status": ["Must be pending, delivered or failed."]})
        rows, next_cursor = keyset_page(
            db,
            deliveries_of(hook.id, status),
            keys=(Delivery.created_at, Delivery.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
        )
        items = _delivery_views([(row[0], row[1]) for row in rows])
        return json_response(_deliveries_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
class WebhookRedeliver(Resource):
    @require_auth(Role.admin, Role.clinician)
    def post(self, webhook_id: str, delivery_id: str) -> Response:
        """Send a delivered or failed delivery again now (same event id, fresh retries)."""
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        delivery, event_type = redeliver(
            db=db, hook=hook, delivery_id=path_id(delivery_id), now=utcnow()
        )
        db.commit()
        return json_response(_delivery_out.dump(_delivery_views([(delivery, event_type)])[0]), 202)


@ns.route("/delivery-health")
class DeliveryHealth(Resource):
    @require_auth(Role.admin)
    def get(self) -> Response:
        """Backlog, its age, failed deliveries, endpoints and live workers (no health data)."""
        health = delivery_health(db=get_db(), now=utcnow())
        health["email_enabled"] = bool(settings().smtp_url)
        return json_response(_health_out.dump(health))
