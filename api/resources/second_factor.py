"""Two-factor sign-in: enrol, confirm, the second step of a login, turning it off, and an org
admin's reset of a member's."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_restx import Namespace, Resource

from api.audit import note_actor
from api.auth import current_principal, require_auth
from api.db import get_db
from api.errors import unauthorized
from api.http import empty_response, json_response, load_body
from api.resources.accounts import token_pair
from api.tokens import TokenRejected
from models.accounts import RevokedAccessToken, User, revoke_access_token, start_session
from models.base import utcnow
from models.second_factor import (
    DIGITS,
    STEP_SECONDS,
    begin_enrolment,
    check_second_factor,
    confirm_enrolment,
    disable_second_factor,
)
from schemas.second_factor import (
    RecoveryCodesOut,
    SecondFactorCodeIn,
    SecondFactorDisableIn,
    SecondFactorEnrolIn,
    SecondFactorEnrolmentOut,
    SecondFactorVerifyIn,
)

ns = Namespace("2fa", path="/auth/2fa", description="Two-factor sign-in")
_enrol_in, _enrolment_out = SecondFactorEnrolIn(), SecondFactorEnrolmentOut()
_confirm_in, _codes_out = SecondFactorCodeIn(), RecoveryCodesOut()
_verify_in, _disable_in = SecondFactorVerifyIn(), SecondFactorDisableIn()
EXPIRED_STEP = "The sign-in step has expired or is not valid; log in again."


def _services() -> Any:
    return current_app.extensions["moodtrack"]


@ns.route("/enrol")
class Enrol(Resource):
    @require_auth(allow_unenrolled=True)
    def post(self) -> Response:
        """A new TOTP seed for the caller (password required); 2FA is on once confirmed."""
        data = load_body(_enrol_in)
        db = get_db()
        services = _services()
        enrolment = begin_enrolment(
            db=db,
            box=services.secret_box,
            passwords=services.passwords,
            user=current_principal().user,
            password=data["password"],
        )
        db.commit()
        body = {
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
        return json_response(_enrolment_out.dump(body))


@ns.route("/confirm")
class Confirm(Resource):
    @require_auth(allow_unenrolled=True)
    def post(self) -> Response:
        """Turn 2FA on with a first code; answers the ten recovery codes, shown only once."""
        data = load_body(_confirm_in)
        db = get_db()
        services = _services()
        codes = confirm_enrolment(
            db=db,
            box=services.secret_box,
            hasher=services.recovery_codes,
            user=current_principal().user,
            code=data["code"],
            now=utcnow(),
        )
        db.commit()
        return json_response(_codes_out.dump({"recovery_codes": codes}))


@ns.route("/verify")
class Verify(Resource):
    def post(self) -> Response:
        """The second step of a login: the login's mfa_token and a code give the tokens."""
        data = load_body(_verify_in)
        services = _services()
        try:
            claims = services.tokens.verify_mfa(data["mfa_token"])
        except TokenRejected:
            raise unauthorized(EXPIRED_STEP) from None
        db = get_db()
        user = db.get(User, claims.user_id)
        spent = db.get(RevokedAccessToken, claims.jti) is not None
        if user is None or user.disabled_at is not None or spent:
            raise unauthorized(EXPIRED_STEP)
        now = utcnow()
        check_second_factor(
            db=db,
            box=services.secret_box,
            hasher=services.recovery_codes,
            user_id=user.id,
            code=data["code"],
            now=now,
        )
        note_actor(user)
        # One token, one sign-in.
        revoke_access_token(db=db, jti=claims.jti, expires_at=claims.expires_at, now=now)
        family, refresh = start_session(db=db, user=user, refresh_ttl=services.settings.refresh_ttl)
        db.commit()
        return json_response(token_pair(user, family.id, refresh))


@ns.route("")
class SecondFactorItem(Resource):
    @require_auth()
    def delete(self) -> Response:
        """Turn 2FA off: the password and a code (TOTP or recovery) are both needed."""
        data = load_body(_disable_in)
        db = get_db()
        services = _services()
        disable_second_factor(
            db=db,
            box=services.secret_box,
            passwords=services.passwords,
            hasher=services.recovery_codes,
            user=current_principal().user,
            now=utcnow(),
            **data,
        )
        db.commit()
        return empty_response()
