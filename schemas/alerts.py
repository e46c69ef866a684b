"""Clinician alerts on the wire."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import RecordOut


class AlertOut(RecordOut):
    """An alert raised by a patient's record; `details` holds numbers and codes only."""

    id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    rule = fields.String(
        required=True, validate=validate.OneOf(["self_harm", "worsening", "post_session_drop"])
    )
    priority = fields.String(required=True, validate=validate.OneOf(["high", "medium"]))
    source_type = fields.String(
        required=True, validate=validate.OneOf(["assessment", "mood_entry"])
    )
    source_id = fields.UUID(required=True)
    created_at = fields.AwareDateTime(required=True)
    acknowledged_at = fields.AwareDateTime(required=True, allow_none=True)
    acknowledged_by_id = fields.UUID(required=True, allow_none=True)
    acknowledgement_note = fields.String(required=True, allow_none=True)
    ruleset_version = fields.String(required=True)
    escalated_at = fields.AwareDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When a high-priority alert left unacknowledged was escalated."},
    )
    details = fields.Dict(keys=fields.String(), required=True)
