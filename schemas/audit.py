"""The audit trail on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields


class AccessLogEntryOut(Schema):
    """Who read or changed the patient's data, and when."""

    at = fields.AwareDateTime(required=True)
    actor_display_name = fields.String(
        required=True, allow_none=True, metadata={"description": "Null for an erased account."}
    )
    actor_role = fields.String(required=True, allow_none=True)
    action = fields.String(required=True)
    resource_type = fields.String(required=True)
    outcome = fields.String(required=True)
    emergency_access = fields.Boolean(
        required=True,
        metadata={"description": "The actor reached the record through an emergency access."},
    )


class AccessLogOut(Schema):
    """One page of the access log, newest first."""

    items = fields.List(fields.Nested(AccessLogEntryOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class AuditEventOut(Schema):
    """One audit record; user ids are null once the user has been erased."""

    id = fields.Integer(required=True)
    at = fields.AwareDateTime(required=True)
    actor = fields.UUID(required=True, allow_none=True, metadata={"description": "Pseudonym."})
    actor_id = fields.UUID(required=True, allow_none=True)
    actor_role = fields.String(required=True, allow_none=True)
    patient = fields.UUID(required=True, allow_none=True, metadata={"description": "Pseudonym."})
    patient_id = fields.UUID(required=True, allow_none=True)
    action = fields.String(required=True)
    resource_type = fields.String(required=True)
    resource_id = fields.String(required=True, allow_none=True)
    outcome = fields.String(required=True)
    request_id = fields.String(required=True, allow_none=True)
    client_address = fields.String(required=True, allow_none=True)
    emergency = fields.Boolean(required=True)


class AuditEventListOut(Schema):
    """One page of audit records, newest first."""

    items = fields.List(fields.Nested(AuditEventOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
