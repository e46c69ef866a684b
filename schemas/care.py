"""Invites and care links on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import PageOut, RecordOut, Text


class InviteIn(Schema):
    """Which organisation the link will belong to (optional when the clinician has one)."""

    organisation_id = fields.UUID(load_default=None)


class InviteOut(Schema):
    """A new invite; the code is shown only this once."""

    id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True)
    code = fields.String(required=True, metadata={"example": "K7QX2-MP4TR"})
    expires_at = fields.AwareDateTime(required=True)


class CareLinkIn(Schema):
    """A patient entering a clinician's code."""

    code = Text(required=True, validate=validate.Length(min=1, max=64))


class PersonOut(Schema):
    """The other party of a link."""

    id = fields.UUID(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True)


class CareLinkOut(RecordOut):
    """A live link between a patient and a clinician."""

    id = fields.UUID(required=True)
    patient = fields.Nested(PersonOut, required=True)
    clinician = fields.Nested(PersonOut, required=True)
    organisation_id = fields.UUID(required=True)
    created_at = fields.AwareDateTime(required=True)


class CareLinkListOut(PageOut):
    """One page of links."""

    items = fields.List(fields.Nested(CareLinkOut), required=True)
