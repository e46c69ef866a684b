"""Two-factor sign-in: enrol, confirm, the second step of a login, turning it off, and an org
admin's reset of a member's."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_restx import Namespace, Resource

from api.audit import note_actor
from api.auth import current_principal, require_auth
from api.contract import Reply, operation
from api.db import get_db
from api.errors import unauthorized
from api.http import empty_response, json_response, load_body
from api.signin import token_pair
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
from schemas.accounts import TokenPairOut
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
    @operation(
        operation_id="enrolSecondFactor",
        tag="auth",
        replies=[
            Reply(200, "The seed; shown only here.", schema=SecondFactorEnrolmentOut),
        ],
        problems=(400, 401, 409, 413, 415, 422, 429, 500),
        body=SecondFactorEnrolIn,
    )
    def post(self) -> Response:
        """Start two-factor enrolment

        Any signed-in user (staff must; patients may). Checks the password (422 on `password`),
        then answers a new TOTP seed (RFC 6238: SHA-1, 6 digits, 30 s) and its `otpauth://` URI
        for an authenticator app; two-factor sign-in is on only once
        `POST /api/v1/auth/2fa/confirm` accepts a first code. Enrolling again before that replaces
        the seed; 409 when two-factor sign-in is already on. Counted with the password checks.
        Open to staff who must still enrol (`MOODTRACK_REQUIRE_STAFF_2FA`).
        """
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
    @operation(
        operation_id="confirmSecondFactor",
        tag="auth",
        replies=[
            Reply(200, "Two-factor sign-in is on.", schema=RecoveryCodesOut),
        ],
        problems=(400, 401, 409, 413, 415, 422, 429, 500),
        body=SecondFactorCodeIn,
    )
    def post(self) -> Response:
        """Turn two-factor sign-in on

        A first code from the authenticator app turns two-factor sign-in on and answers ten
        one-time recovery codes, shown only here (each works once, in place of a code). A wrong
        code is 422 on `code`; 409 without an enrolment or when already on. From then on, login
        answers `mfa_required` instead of tokens. Attempts are rate limited per user.
        """
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
    @operation(
        operation_id="verifySecondFactor",
        tag="auth",
        replies=[
            Reply(200, "A fresh token pair.", schema=TokenPairOut),
        ],
        problems=(400, 401, 413, 415, 422, 429, 500),
        body=SecondFactorVerifyIn,
        public=True,
    )
    def post(self) -> Response:
        """Second step of a login

        No bearer token: the `mfa_token` of a login that answered `mfa_required`, and a code
        (TOTP, or an unused recovery code) give the token pair. A code is accepted once: the same
        TOTP code again, even within its 30 seconds, is 401, as is a wrong one or a spent,
        expired or invalid `mfa_token` (valid 5 minutes, for one sign-in). Rate limited per
        account and per address.
        """
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
    @operation(
        operation_id="disableSecondFactor",
        tag="auth",
        replies=[
            Reply(204, "Off."),
        ],
        problems=(400, 401, 403, 409, 413, 415, 422, 429, 500),
        body=SecondFactorDisableIn,
    )
    def delete(self) -> Response:
        """Turn two-factor sign-in off

        Needs the password (422 on `password`) and a code, TOTP or recovery (422 on `code`);
        409 when it is not on. The recovery codes go too. Staff who must use two-factor sign-in
        can then only enrol again.
        """
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
