"""Emergency access on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import PageOut, RecordOut, Text


class EmergencyAccessIn(Schema):
    """Why the record must be opened (kept in the audit trail only), and in which organisation
    (needed only when the patient is cared for in several of the caller's)."""

    reason = Text(
        required=True,
        validate=validate.Length(min=10, max=1000),
        metadata={"description": "Free text, 10 to 1000 characters; never shown to the patient."},
    )
    organisation_id = fields.UUID(load_default=None)


class EmergencyAccessOut(Schema):
    """A running emergency access (the reason is not repeated)."""

    id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True)
    started_at = fields.AwareDateTime(required=True)
    expires_at = fields.AwareDateTime(required=True)


class EmergencyAccessReviewOut(RecordOut):
    """An emergency access as the organisation's admins review it."""

    id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    patient_display_name = fields.String(required=True)
    clinician_id = fields.UUID(required=True)
    clinician_display_name = fields.String(required=True)
    reason = fields.String(required=True)
    started_at = fields.AwareDateTime(required=True)
    expires_at = fields.AwareDateTime(required=True)
    active = fields.Boolean(required=True, metadata={"description": "Not yet expired."})
    reviewed = fields.Boolean(required=True)
    reviewed_at = fields.AwareDateTime(required=True, allow_none=True)
    reviewed_by_id = fields.UUID(required=True, allow_none=True)


class EmergencyAccessReviewListOut(PageOut):
    """One page of the organisation's emergency accesses, newest first."""

    items = fields.List(fields.Nested(EmergencyAccessReviewOut), required=True)
