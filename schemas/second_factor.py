"""Two-factor sign-in on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import Text, password_field


def code_field(**kwargs: object) -> Text:
    """A 6-digit TOTP code or a recovery code (spaces and dashes ignored)."""
    return Text(
        validate=validate.Length(min=1, max=32),
        metadata={"example": "492039"},
        **kwargs,  # type: ignore[arg-type]
    )


class SecondFactorEnrolIn(Schema):
    """The account's password, to start (or restart) an enrolment."""

    password = password_field(required=True)


class SecondFactorEnrolmentOut(Schema):
    """A new TOTP seed for the authenticator app; confirm it with a first code."""

    secret = fields.String(required=True, metadata={"description": "Base32 seed (RFC 4648)."})
    otpauth_uri = fields.String(
        required=True, metadata={"description": "otpauth://totp/... for a QR code or a link."}
    )
    digits = fields.Integer(required=True, metadata={"example": 6})
    period = fields.Integer(required=True, metadata={"description": "Seconds.", "example": 30})


class SecondFactorCodeIn(Schema):
    """A first code from the authenticator app."""

    code = code_field(required=True)


class RecoveryCodesOut(Schema):
    """Two-factor sign-in is on; the ten recovery codes are shown only this once."""

    recovery_codes = fields.List(fields.String(), required=True)


class SecondFactorVerifyIn(Schema):
    """The second step of a login: its token and a code (TOTP or recovery)."""

    mfa_token = Text(required=True, validate=validate.Length(min=1, max=2000))
    code = code_field(required=True)


class SecondFactorDisableIn(Schema):
    """Turning 2FA off takes the password and a code."""

    password = password_field(required=True)
    code = code_field(required=True)


class MfaRequiredOut(Schema):
    """The password was right; a code is needed before any token is issued."""

    mfa_required = fields.Boolean(required=True, metadata={"enum": [True]})
    mfa_token = fields.String(
        required=True, metadata={"description": "Send to POST /api/v1/auth/2fa/verify."}
    )
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})
