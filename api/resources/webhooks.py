"""Webhook endpoints, their deliveries, and delivery health: the operator's side of delivery."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth
from api.contract import Reply, operation
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
    WebhookEvent,
    WebhookIn,
    WebhookListOut,
    WebhookOut,
    WebhookSecretOut,
    WebhookUpdate,
)

# The request every endpoint receives (documented as the operation's callback).
EVENT_CALLBACK = {
    "event": {
        "{$request.body#/url}": {
            "post": {
                "summary": "An event, sent to the endpoint",
                "description": (
                    "At least once, signed per Standard Webhooks: verify `webhook-signature`\n"
                    "(`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<body>` with\n"
                    "the secret; two signatures for 24 hours after a rotation) and refuse stale\n"
                    "timestamps; drop a repeated `webhook-id`. Answer 2xx within the timeout.\n"
                ),
                "parameters": [
                    {
                        "name": "webhook-id",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                    {
                        "name": "webhook-timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "webhook-signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": WebhookEvent}},
                },
                "responses": {
                    "200": {"description": "Received; any 2xx counts as delivered."},
                    "4XX": {
                        "description": "Refused (e.g. a signature that does not verify): like "
                        "any answer but 2xx, a failed attempt, retried on the schedule."
                    },
                },
            }
        }
    }
}

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
    organisations = administered_organisations(db=get_db(), user_id=principal.id)
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
    @operation(
        operation_id="createWebhook",
        tag="webhooks",
        replies=[
            Reply(
                201,
                "The endpoint with its secret (shown once).",
                schema=WebhookSecretOut,
                headers=("ETag", "Location", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 413, 415, 422, 429, 500),
        body=WebhookIn,
        callbacks=EVENT_CALLBACK,
    )
    def post(self) -> Response:
        """Register a webhook endpoint

        Operators (`admin`), and org admins for their organisation. An organisation's endpoint
        receives the events of the patients linked to that organisation; an operator's endpoint
        without `organisation_id` receives every patient's. The endpoint receives the chosen
        event types (`alert.raised`,
        `alert.escalated`, `alert.acknowledged`, `reminder.due`) as signed POSTs (Standard
        Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; body `WebhookEvent`).
        `secret` is in this response only. `url` is http(s) (https in production); a loopback or
        private address is refused unless `MOODTRACK_WEBHOOK_ALLOW_PRIVATE_NETWORKS` allows it.
        Delivery is at least once: drop repeats by `webhook-id`. A failed request (not 2xx, or no
        answer within `MOODTRACK_WEBHOOK_TIMEOUT_SECONDS`) is retried with exponential back-off and
        jitter for more than 24 hours, then kept as failed; an endpoint without a success for
        24 hours is disabled and the operators are emailed.
        """
        managed = _managed()
        data = load_body(_in)
        owner = _owner(data.pop("organisation_id", None), managed)
        _check_url(data["url"])
        db = get_db()
        hook = create_webhook(
            db=db,
            creator_id=current_principal().id,
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
    @operation(
        operation_id="listWebhooks",
        tag="webhooks",
        replies=[
            Reply(200, "One page of endpoints.", schema=WebhookListOut),
        ],
        problems=(401, 403, 422, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self) -> Response:
        """Webhook endpoints

        Operators: every endpoint; org admins: their organisations' endpoints. Newest first;
        never the secrets.
        """
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
    @operation(
        operation_id="getWebhook",
        tag="webhooks",
        replies=[
            Reply(
                200,
                "The endpoint.",
                schema=WebhookOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 500),
    )
    def get(self, webhook_id: str) -> Response:
        """One webhook endpoint

        The operator, or an org admin of the endpoint's organisation (others 404).
        """
        hook = get_webhook(db=get_db(), webhook_id=path_id(webhook_id), organisations=_managed())
        return json_response(_out.dump(_view(hook)), etag=hook.etag)

    @require_auth(Role.admin, Role.clinician)
    @operation(
        operation_id="updateWebhook",
        tag="webhooks",
        replies=[
            Reply(
                200,
                "The endpoint.",
                schema=WebhookOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=WebhookUpdate,
    )
    def patch(self, webhook_id: str) -> Response:
        """Change a webhook endpoint

        The operator, or an org admin of the endpoint's organisation (others 404); needs
        `If-Match`. `enabled: false` stops deliveries to it; `enabled: true`
        turns a disabled endpoint back on and forgets its run of failures (failed deliveries stay
        failed: redeliver them one by one).
        """
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
    @operation(
        operation_id="deleteWebhook",
        tag="webhooks",
        replies=[
            Reply(204, "Removed.", headers=()),
        ],
        problems=(401, 403, 404, 412, 428, 429, 500),
        parameters=("IfMatch",),
    )
    def delete(self, webhook_id: str) -> Response:
        """Remove a webhook endpoint

        The operator, or an org admin of the endpoint's organisation (others 404); needs
        `If-Match`. Its deliveries and their attempts go with it.
        """
        db = get_db()
        hook = get_webhook(db=db, webhook_id=path_id(webhook_id), organisations=_managed())
        require_if_match(hook.etag)
        db.delete(hook)
        db.commit()
        return empty_response()


@ns.route("/webhooks/<webhook_id>/rotate-secret")
class WebhookRotate(Resource):
    @require_auth(Role.admin, Role.clinician)
    @operation(
        operation_id="rotateWebhookSecret",
        tag="webhooks",
        replies=[
            Reply(
                200,
                "The endpoint with its new secret.",
                schema=WebhookSecretOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 429, 500),
    )
    def post(self, webhook_id: str) -> Response:
        """Rotate a webhook's signing secret

        The operator, or an org admin of the endpoint's organisation (others 404). A new secret,
        shown in this response only. For 24 hours every request carries
        two signatures (the new secret's and the old one's), so the receiver can switch over
        without dropping a delivery.
        """
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
    @operation(
        operation_id="listWebhookDeliveries",
        tag="webhooks",
        replies=[
            Reply(200, "One page of deliveries.", schema=DeliveryListOut),
        ],
        problems=(401, 403, 404, 422, 500),
        parameters=("DeliveryStatus", "Limit", "Cursor"),
    )
    def get(self, webhook_id: str) -> Response:
        """Deliveries to a webhook endpoint

        The operator, or an org admin of the endpoint's organisation (others 404). Newest first,
        each with its status (`pending`, `delivered`, `failed`: the
        dead letter), its attempts (time, duration, status code or error) and the next try of a
        pending one. Never a body.
        """
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
    @operation(
        operation_id="redeliverWebhookDelivery",
        tag="webhooks",
        replies=[
            Reply(202, "The delivery, pending again.", schema=DeliveryOut),
        ],
        problems=(401, 403, 404, 409, 429, 500),
    )
    def post(self, webhook_id: str, delivery_id: str) -> Response:
        """Send a delivery again

        The operator, or an org admin of the endpoint's organisation (others 404). A delivered
        or failed delivery goes back to `pending` now, with a fresh
        retry schedule and the same `webhook-id` (a receiver that already has it drops the
        repeat); a worker sends it. 409 for a pending one (it is being sent or retried
        already) and while the endpoint is disabled (turn it back on first: its pending
        deliveries then go out by themselves).
        """
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
    @operation(
        operation_id="getDeliveryHealth",
        tag="webhooks",
        replies=[
            Reply(200, "Delivery health now.", schema=DeliveryHealthOut),
        ],
        problems=(401, 403, 500),
    )
    def get(self) -> Response:
        """Delivery health

        Admin only; counts and ages, no health data. Events waiting to be expanded and the age of
        the oldest, pending and retrying deliveries and the age of the oldest, failed deliveries
        (all, and in the last 24 hours), deliveries in the last hour, endpoints disabled or
        failing, and the workers seen alive in the last 30 seconds. `/readyz` stays about the
        database; watch this for delivery (e.g. alarm when the oldest pending age passes a few
        minutes, or when `workers` is empty).
        """
        health = delivery_health(db=get_db(), now=utcnow())
        health["email_enabled"] = bool(settings().smtp_url)
        return json_response(_health_out.dump(health))
