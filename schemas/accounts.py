"""Accounts, tokens and profiles on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from models.accounts import Role
from schemas.common import EmailText, Text, TimeZoneField, display_name_field, password_field


class RegisterIn(Schema):
    """A patient signing themself up."""

    email = EmailText(required=True, validate=validate.Length(max=320))
    password = password_field(required=True)
    display_name = display_name_field(required=True)
    timezone = TimeZoneField(required=True)


class RegisterAcceptedOut(Schema):
    """The same answer for every well-formed sign-up, whether or not the email has an account."""

    status = fields.String(required=True, metadata={"enum": ["confirmation_sent"]})
    detail = fields.String(required=True)


class RegisterConfirmIn(Schema):
    """The code from the sign-up email, and the password chosen at sign-up."""

    email = EmailText(required=True, validate=validate.Length(max=320))
    code = Text(required=True, validate=validate.Length(min=1, max=64))
    password = password_field(required=True)


class UserCreateIn(Schema):
    """An admin creating a clinician or another admin."""

    email = EmailText(required=True, validate=validate.Length(max=320))
    password = password_field(required=True)
    display_name = display_name_field(required=True)
    timezone = TimeZoneField(load_default="UTC")
    role = Text(required=True, validate=validate.OneOf([Role.clinician.value, Role.admin.value]))


class UserUpdate(Schema):
    """An admin enabling or disabling an account."""

    disabled = fields.Boolean(required=True)


class LoginIn(Schema):
    """Email and password."""

    email = Text(required=True, validate=validate.Length(min=1, max=320))
    password = password_field(required=True)


class RefreshIn(Schema):
    """A refresh token to trade for a new pair."""

    refresh_token = Text(required=True, validate=validate.Length(min=1, max=200))


class TokenPairOut(Schema):
    """A fresh access token and its refresh token."""

    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})
    second_factor_enrolment_required = fields.Boolean(
        required=True,
        metadata={
            "description": "True for staff who must turn on two-factor sign-in: until they "
            "confirm it these tokens open only /auth/2fa/enrol, /auth/2fa/confirm and logout."
        },
    )


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


class CohortRowOut(Schema):
    """One linked patient at a glance (analytics.md cohort row)."""

    id = fields.UUID(required=True)
    display_name = fields.String(required=True)
    timezone = fields.String(required=True)
    linked_since = fields.AwareDateTime(required=True)
    latest_phq9 = fields.Integer(required=True, allow_none=True)
    latest_phq9_band = fields.String(required=True, allow_none=True)
    latest_phq9_date = fields.Date(
        required=True, allow_none=True, metadata={"description": "The patient's local date."}
    )
    phq9_baseline = fields.Float(required=True, allow_none=True)
    phq9_current = fields.Float(required=True, allow_none=True)
    phq9_change = fields.Float(required=True, allow_none=True)
    response = fields.Boolean(required=True, allow_none=True)
    remission = fields.Boolean(required=True, allow_none=True)
    sessions_completed = fields.Integer(required=True)
    last_session_start = fields.AwareDateTime(required=True, allow_none=True)
    last_entry_at = fields.AwareDateTime(required=True, allow_none=True)
    adherence_14d = fields.Float(
        required=True,
        metadata={"description": "Days with a mood entry among the last 14 local dates, / 14."},
    )
    open_alerts = fields.Integer(required=True)
    needs_attention = fields.Boolean(
        required=True,
        metadata={
            "description": "An open alert, or no mood entry for 3 days while a session "
            "was completed in the last 30."
        },
    )


class CohortOut(Schema):
    """One page of the clinician's cohort."""

    items = fields.List(fields.Nested(CohortRowOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
    ruleset_version = fields.String(
        required=True,
        metadata={"description": "Of the outcome definitions behind response and remission."},
    )
