"""Webhook endpoints, their deliveries, delivery health, and the events they receive."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models.delivery import DeliveryStatus
from models.events import SUBSCRIBABLE, EventType
from schemas.common import PageOut, Text

EVENT_TYPES = [t.value for t in SUBSCRIBABLE]


def _event_types(**kwargs: object) -> fields.List:
    return fields.List(
        Text(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata={"description": "Event types this endpoint receives."},
        **kwargs,
    )


class WebhookIn(Schema):
    """An endpoint to register: where, and which events."""

    url = Text(
        required=True,
        validate=validate.Length(min=1, max=2000),
        metadata={
            "description": "http(s) URL; https in production.",
            "example": "https://relay.example.org/moodtrack",
        },
    )
    event_types = _event_types(required=True)
    description = Text(validate=validate.Length(max=200), allow_none=True, load_default=None)
    organisation_id = fields.UUID(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "Whose patients' events it receives: an organisation (org admins: "
            "one they administer, by default their only one), or null for every patient "
            "(operators only)."
        },
    )


class WebhookUpdate(Schema):
    """A change to an endpoint; `enabled: true` turns a disabled one back on."""

    url = Text(validate=validate.Length(min=1, max=2000))
    event_types = _event_types()
    description = Text(validate=validate.Length(max=200), allow_none=True)
    enabled = fields.Boolean()


class WebhookOut(Schema):
    """An endpoint as operators see it (never its secret)."""

    id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True, allow_none=True)
    url = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    event_types = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True)
    enabled = fields.Boolean(required=True)
    disabled_at = fields.AwareDateTime(required=True, allow_none=True)
    disabled_reason = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(["failing", "operator"]),
        metadata={"description": "`failing`: no success for a day, so the service disabled it."},
    )
    failing_since = fields.AwareDateTime(required=True, allow_none=True)
    last_success_at = fields.AwareDateTime(required=True, allow_none=True)
    previous_secret_expires_at = fields.AwareDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "Until then requests also carry a signature with the old secret."},
    )
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    version = fields.Integer(required=True)


class WebhookSecretOut(WebhookOut):
    """An endpoint with its signing secret: shown once, at creation or rotation."""

    secret = fields.String(
        required=True,
        metadata={"description": "Standard Webhooks secret (whsec_...); it is not shown again."},
    )


class WebhookListOut(PageOut):
    """A page of endpoints, newest first."""

    items = fields.List(fields.Nested(WebhookOut), required=True)


class DeliveryAttemptOut(Schema):
    """One try: when, how long, what came back (a status code or an error name)."""

    number = fields.Integer(required=True)
    started_at = fields.AwareDateTime(required=True)
    duration_ms = fields.Integer(required=True)
    response_status = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)


class DeliveryOut(Schema):
    """One event's delivery to this endpoint, with every attempt."""

    id = fields.UUID(required=True)
    event_id = fields.UUID(
        required=True, metadata={"description": "The `webhook-id` header of every attempt."}
    )
    event_type = fields.String(required=True, validate=validate.OneOf([t.value for t in EventType]))
    status = fields.String(
        required=True, validate=validate.OneOf([s.value for s in DeliveryStatus])
    )
    attempts = fields.Integer(required=True)
    created_at = fields.AwareDateTime(required=True)
    next_attempt_at = fields.AwareDateTime(
        required=True, allow_none=True, metadata={"description": "Null unless pending."}
    )
    last_attempt_at = fields.AwareDateTime(required=True, allow_none=True)
    delivered_at = fields.AwareDateTime(required=True, allow_none=True)
    last_response_status = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    attempt_log = fields.List(fields.Nested(DeliveryAttemptOut), required=True)


class DeliveryListOut(PageOut):
    """A page of deliveries, newest first."""

    items = fields.List(fields.Nested(DeliveryOut), required=True)


class WorkerOut(Schema):
    """A delivery worker seen alive recently."""

    name = fields.String(required=True)
    started_at = fields.AwareDateTime(required=True)
    seen_at = fields.AwareDateTime(required=True)


class DeliveryHealthOut(Schema):
    """What operators watch: backlog, its age, failures, endpoints and workers."""

    checked_at = fields.AwareDateTime(required=True)
    email_enabled = fields.Boolean(required=True)
    events_waiting = fields.Integer(
        required=True, metadata={"description": "Events not yet expanded into deliveries."}
    )
    oldest_waiting_event_age_seconds = fields.Float(required=True, allow_none=True)
    deliveries_pending = fields.Integer(required=True)
    oldest_pending_delivery_age_seconds = fields.Float(required=True, allow_none=True)
    deliveries_retrying = fields.Integer(required=True)
    deliveries_paused = fields.Integer(
        required=True,
        metadata={"description": "Pending for a disabled endpoint: sent once it is back on."},
    )
    deliveries_failed = fields.Integer(
        required=True, metadata={"description": "Retries exhausted (the dead letter)."}
    )
    deliveries_failed_last_24h = fields.Integer(required=True)
    deliveries_delivered_last_hour = fields.Integer(required=True)
    webhooks = fields.Integer(required=True)
    webhooks_disabled = fields.Integer(required=True)
    webhooks_failing = fields.Integer(required=True)
    workers = fields.List(fields.Nested(WorkerOut), required=True)


class WebhookEventData(Schema):
    """What an event carries: ids, codes, priority and times; never health data."""

    alert_id = fields.UUID(metadata={"description": "alert.* events"})
    patient_id = fields.UUID(metadata={"description": "alert.* and reminder.due events"})
    rule = fields.String(validate=validate.OneOf(["self_harm", "worsening", "post_session_drop"]))
    priority = fields.String(validate=validate.OneOf(["high", "medium"]))
    raised_at = fields.AwareDateTime()
    acknowledged_at = fields.AwareDateTime()
    escalated_at = fields.AwareDateTime()
    unacknowledged_minutes = fields.Integer()
    item = fields.String(
        metadata={"description": "reminder.due: daily_mood, pre_session, post_session_4h, ..."}
    )
    instrument = fields.String()
    session_id = fields.UUID(allow_none=True)
    window_start = fields.AwareDateTime()
    window_end = fields.AwareDateTime()
    link = fields.String(required=True, metadata={"description": "Where to read more (signed in)."})


class WebhookEvent(Schema):
    """The JSON body of every webhook request (signed per Standard Webhooks)."""

    id = fields.UUID(required=True, metadata={"description": "Equals the webhook-id header."})
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    timestamp = fields.AwareDateTime(required=True, metadata={"description": "When it happened."})
    data = fields.Nested(WebhookEventData, required=True)
