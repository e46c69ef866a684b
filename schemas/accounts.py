"""Accounts, tokens and profiles on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models.accounts import Role
from schemas.common import PageOut, TimeZoneField, display_name_field, password_field


class RegisterIn(Schema):
    """A patient signing themself up."""

    email = fields.Email(required=True, validate=validate.Length(max=320))
    password = password_field(required=True)
    display_name = display_name_field(required=True)
    timezone = TimeZoneField(required=True)


class UserCreateIn(Schema):
    """An admin creating a clinician or another admin."""

    email = fields.Email(required=True, validate=validate.Length(max=320))
    password = password_field(required=True)
    display_name = display_name_field(required=True)
    timezone = TimeZoneField(load_default="UTC")
    role = fields.String(
        required=True, validate=validate.OneOf([Role.clinician.value, Role.admin.value])
    )


class UserUpdate(Schema):
    """An admin enabling or disabling an account."""

    disabled = fields.Boolean(required=True)


class LoginIn(Schema):
    """Email and password."""

    email = fields.String(required=True, validate=validate.Length(min=1, max=320))
    password = password_field(required=True)


class RefreshIn(Schema):
    """A refresh token to trade for a new pair."""

    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TokenPairOut(Schema):
    """A fresh access token and its refresh token."""

    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})


class UserOut(Schema):
    """A user's own profile (also what admins see of accounts)."""

    id = fields.UUID(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True)
    display_name = fields.String(required=True)
    timezone = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)
    disabled = fields.Boolean(required=True)


class MeUpdate(Schema):
    """Changes to one's own profile."""

    display_name = display_name_field()
    timezone = TimeZoneField()


class PasswordChangeIn(Schema):
    """The current password and its replacement."""

    current_password = password_field(required=True)
    new_password = password_field(required=True)


class PatientOut(Schema):
    """A patient as their care team sees them."""

    id = fields.UUID(required=True)
    display_name = fields.String(required=True)
    timezone = fields.String(required=True)
    linked_since = fields.AwareDateTime(
        allow_none=True, required=True, metadata={"description": "Null for the patient's own view."}
    )


class PatientListOut(PageOut):
    """One page of linked patients."""

    items = fields.List(fields.Nested(PatientOut), required=True)
