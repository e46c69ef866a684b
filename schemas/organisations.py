"""Organisations, their staff and staff invites on the wire."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models.organisations import MemberRole
from schemas.common import (
    EmailText,
    PageOut,
    RecordOut,
    Text,
    TimeZoneField,
    display_name_field,
    password_field,
)

_MEMBER_ROLES = [role.value for role in MemberRole]


def organisation_name_field(**kwargs: Any) -> Text:
    """An organisation's name."""
    return Text(validate=validate.Length(min=1, max=200), **kwargs)


class FirstAdminIn(Schema):
    """Who becomes the organisation's first org admin."""

    email = EmailText(required=True, validate=validate.Length(max=320))


class OrganisationIn(Schema):
    """The operator creating an organisation and naming its first org admin."""

    name = organisation_name_field(required=True)
    first_admin = fields.Nested(FirstAdminIn, required=True)


class OrganisationUpdate(Schema):
    """The operator renaming an organisation."""

    name = organisation_name_field(required=True)


class OrganisationOut(RecordOut):
    """An organisation."""

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    members = fields.Integer(required=True, metadata={"description": "Active members."})


class OrganisationListOut(PageOut):
    """One page of organisations, oldest first."""

    items = fields.List(fields.Nested(OrganisationOut), required=True)


class StaffInviteIn(Schema):
    """An org admin inviting one person (by email) as clinician or org admin."""

    email = EmailText(required=True, validate=validate.Length(max=320))
    role = Text(required=True, validate=validate.OneOf(_MEMBER_ROLES))


class StaffInviteOut(RecordOut):
    """A new staff invite; the code is shown only this once."""

    id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True)
    code = fields.String(required=True, metadata={"example": "K7QX-2MP4-TRW9"})
    expires_at = fields.AwareDateTime(required=True)


class OrganisationCreatedOut(OrganisationOut):
    """A new organisation and the invite of its first org admin."""

    first_admin_invite = fields.Nested(StaffInviteOut, required=True)


class StaffInviteAcceptIn(Schema):
    """The invited person taking up a staff invite.

    Without an account for the invite's email, one is made with this password, name and time
    zone; with a staff account already, the password must be that account's.
    """

    code = Text(required=True, validate=validate.Length(min=1, max=64))
    password = password_field(required=True)
    display_name = display_name_field(load_default=None)
    timezone = TimeZoneField(load_default="UTC")


class MemberOut(Schema):
    """A member of an organisation, as its org admins see them."""

    user_id = fields.UUID(required=True)
    organisation_id = fields.UUID(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True)
    disabled = fields.Boolean(required=True)
    second_factor = fields.Boolean(
        required=True, metadata={"description": "Whether two-factor sign-in is on."}
    )
    created_at = fields.AwareDateTime(required=True)


class MemberListOut(PageOut):
    """One page of members, oldest first."""

    items = fields.List(fields.Nested(MemberOut), required=True)


class MemberUpdate(Schema):
    """An org admin changing a member's role, or disabling or re-enabling them."""

    role = Text(validate=validate.OneOf(_MEMBER_ROLES))
    disabled = fields.Boolean()

    @validates_schema
    def _something(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give role, disabled or both.", field_name="_body")
