"""Register, log in, rotate and revoke tokens; one's own profile; staff accounts."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask_restx import Namespace, Resource
from sqlalchemy import Row

from api.audit import note_actor
from api.auth import current_principal, require_auth
from api.contract import Reply, operation
from api.db import get_db
from api.errors import not_found
from api.http import empty_response, json_response, load_body, require_if_match
from api.limits import client_address
from api.signin import token_pair
from models.accounts import (
    Role,
    User,
    authenticate,
    change_password,
    create_user,
    email_key,
    revoke_access_token,
    revoke_family,
    rotate_refresh_token,
    start_session,
)
from models.base import utcnow
from models.second_factor import has_second_factor
from models.signups import Notice, confirm_signup, start_signup
from models.throttle import throttle_keys
from schemas.accounts import (
    LoginIn,
    MeUpdate,
    PasswordChangeIn,
    RefreshIn,
    RegisterAcceptedOut,
    RegisterConfirmIn,
    RegisterIn,
    TokenPairOut,
    UserCreateIn,
    UserOut,
    UserUpdate,
)
from schemas.second_factor import MfaRequiredOut

auth_ns = Namespace("auth", path="/auth", description="Sign-up and tokens")
me_ns = Namespace("me", path="/me", description="The caller's own account")
users_ns = Namespace("users", path="/users", description="Staff accounts (admin)")

_register_in, _login_in, _refresh_in = RegisterIn(), LoginIn(), RefreshIn()
_user_out, _mfa_out = UserOut(), MfaRequiredOut()
_me_update, _password_in = MeUpdate(), PasswordChangeIn()
_user_create_in, _user_update = UserCreateIn(), UserUpdate()
_accepted_out, _confirm_in = RegisterAcceptedOut(), RegisterConfirmIn()


def _services() -> Any:
    return current_app.extensions["moodtrack"]


def user_view(user: User | Row[Any]) -> dict[str, Any]:
    """A user (or a principal's profile row) as UserOut renders it."""
    return _user_out.dump(
        {
            "id": user.id,
            "email": user.email,
            "role": user.role.value,
            "display_name": user.display_name,
            "timezone": user.timezone,
            "created_at": user.created_at,
            "disabled": user.disabled_at is not None,
        }
    )


SIGNUP_ACCEPTED = {
    "status": "confirmation_sent",
    "detail": "If this address can be used, a confirmation code is on its way to it. Send it "
    "with the password to POST /api/v1/auth/register/confirm within 24 hours.",
}


def _signup_message(notice: Notice) -> tuple[str, str]:
    """Subject and text of a sign-up email (never the display name: no health context)."""
    if notice.code is None:
        return (
            "Sign-up attempt for your moodtrack account",
            "Someone tried to sign up for moodtrack with this address,\n"
            "which already has an account. If it was you, log in with\n"
            "your password instead. If it was not, you can ignore this\n"
            "message: nothing has changed.\n",
        )
    return (
        "Your moodtrack sign-up code",
        f"Your sign-up code is {notice.code}.\n"
        "Enter it in the app within 24 hours to finish signing up.\n"
        "If you did not sign up, ignore this message: no account\n"
        "is made without the code.\n",
    )


@auth_ns.route("/register")
class Register(Resource):
    @operation(
        operation_id="register",
        tag="auth",
        replies=[
            Reply(202, "Accepted; see the email.", schema=RegisterAcceptedOut),
        ],
        problems=(400, 413, 415, 422, 429, 500),
        body=RegisterIn,
        public=True,
    )
    def post(self) -> Response:
        """Sign up as a patient

        Starts a `patient` sign-up. Every well-formed request gets the same 202 and body,
        whether or not the email (compared case-insensitively) already has an account, in about
        the same time (the password is hashed either way, a pending sign-up is stored either way,
        and the email goes out from a background queue): sign-up does not tell anyone who uses
        the service. A new address is sent an 8-character code; an address with an account is
        sent a note saying so (and no code). The account exists once
        `POST /api/v1/auth/register/confirm` gets the code with the same password. Signing up
        again replaces the pending sign-up (and its code). The password must meet the policy
        (length, not a common password, not the email); a failure is 422 on `password`, for any
        email alike.
        """
        data = load_body(_register_in)
        db = get_db()
        services = _services()
        notice = start_signup(db=db, passwords=services.passwords, now=utcnow(), **data)
        db.commit()
        subject, body = _signup_message(notice)
        services.mailer.send(to=notice.to, subject=subject, body=body)
        return json_response(_accepted_out.dump(SIGNUP_ACCEPTED), 202)


@auth_ns.route("/register/confirm")
class RegisterConfirm(Resource):
    @operation(
        operation_id="confirmRegistration",
        tag="auth",
        replies=[
            Reply(
                201,
                "The new account.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 409, 413, 415, 422, 429, 500),
        body=RegisterConfirmIn,
        public=True,
    )
    def post(self) -> Response:
        """Finish a sign-up

        The code from the sign-up email (case, spaces and dashes ignored) and the password chosen
        at sign-up create the `patient` account. A wrong, used or expired (24 h) code, or an email
        with no pending sign-up, is the same 422 on `code`; five wrong codes void the pending
        sign-up. A right code with another password is 422 on `password`: only the person who
        chose the password and reads the mailbox can finish. Then log in.
        """
        data = load_body(_confirm_in)
        db = get_db()
        user = confirm_signup(db=db, passwords=_services().passwords, now=utcnow(), **data)
        note_actor(user)
        db.commit()
        return json_response(user_view(user), 201, etag=user.etag)


@auth_ns.route("/login")
class Login(Resource):
    @operation(
        operation_id="login",
        tag="auth",
        replies=[
            Reply(
                200,
                "A fresh token pair, or the second step of the sign-in.",
                schema=(
                    TokenPairOut,
                    MfaRequiredOut,
                ),
            ),
        ],
        problems=(400, 401, 413, 415, 422, 429, 500),
        body=LoginIn,
        public=True,
    )
    def post(self) -> Response:
        """Log in

        Exchanges email and password for an access token and a refresh token (a new session).
        Wrong email, wrong password and disabled account all give the same 401, and unknown
        and existing emails are counted and answered alike at every stage. Failures are
        counted per (account, client address): after 10 in a row that address gets 429 with
        `Retry-After` for that account (30 s, doubling, at most an hour), and a right password
        from it clears the count. An account that collected 20 failures within an hour from
        all addresses together is under attack: each address then gets 3 tries before its
        wait starts. No address is ever refused for failures made elsewhere, so an attacker
        cannot keep the owner out. Logins are also limited per address and per (account,
        address) by the abuse limits.

        An account with two-factor sign-in on gets no token here: the answer is
        `{"mfa_required": true, "mfa_token": ..., "expires_in": 300}` (`MfaRequiredOut`), and
        `POST /api/v1/auth/2fa/verify` with that token and a code gives the token pair. A staff
        account without two-factor sign-in while `MOODTRACK_REQUIRE_STAFF_2FA` is on gets
        tokens with `second_factor_enrolment_required: true`: they open only the enrolment
        and logout until it is confirmed (every other route is 403
        `urn:moodtrack:problem:second-factor-enrolment-required`).
        """
        data = load_body(_login_in)
        db = get_db()
        services = _services()
        now = utcnow()
        keys = throttle_keys(
            secret=services.throttle_secret,
            email_key=email_key(data["email"]),
            address=client_address(),
        )
        user = authenticate(db=db, passwords=services.passwords, throttle=keys, now=now, **data)
        note_actor(user)
        if has_second_factor(db=db, user_id=user.id):
            # No token yet: the code comes first (POST /auth/2fa/verify).
            db.commit()
            mfa = {
                "mfa_required": True,
                "mfa_token": services.tokens.issue_mfa(user_id=user.id, now=now),
                "expires_in": int(services.tokens.mfa_ttl.total_seconds()),
            }
            return json_response(_mfa_out.dump(mfa))
        family, refresh = start_session(db=db, user=user, refresh_ttl=services.settings.refresh_ttl)
        db.commit()
        return json_response(token_pair(user, family.id, refresh))


@auth_ns.route("/refresh")
class Refresh(Resource):
    @operation(
        operation_id="refresh",
        tag="auth",
        replies=[
            Reply(200, "A new token pair.", schema=TokenPairOut),
        ],
        problems=(400, 401, 413, 415, 422, 429, 500),
        body=RefreshIn,
        public=True,
    )
    def post(self) -> Response:
        """Rotate a refresh token

        Trades a live refresh token for a new pair; the old refresh token dies. Presenting a
        dead one again revokes the whole session (its token family). Any invalid, expired or
        revoked refresh token is 401.
        """
        data = load_body(_refresh_in)
        db = get_db()
        user, family, refresh = rotate_refresh_token(
            db=db,
            raw_token=data["refresh_token"],
            now=utcnow(),
            refresh_ttl=_services().settings.refresh_ttl,
        )
        note_actor(user)
        db.commit()
        return json_response(token_pair(user, family.id, refresh))


@auth_ns.route("/logout")
class Logout(Resource):
    @require_auth(allow_unenrolled=True)
    @operation(
        operation_id="logout",
        tag="auth",
        replies=[
            Reply(204, "Logged out."),
        ],
        problems=(401, 429, 500),
    )
    def post(self) -> Response:
        """Log out

        Ends this session: revokes its refresh-token family and the access token used for
        this call. No body.
        """
        principal = current_principal()
        db = get_db()
        now = utcnow()
        revoke_family(db=db, family_id=principal.claims.family_id, now=now)
        revoke_access_token(
            db=db, jti=principal.claims.jti, expires_at=principal.claims.expires_at, now=now
        )
        db.commit()
        return empty_response()


@me_ns.route("")
class Me(Resource):
    @require_auth()
    @operation(
        operation_id="getMe",
        tag="me",
        replies=[
            Reply(
                200,
                "The caller's profile.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 500),
    )
    def get(self) -> Response:
        """My profile

        The caller's own account, with its ETag for a later PATCH.
        """
        # The profile the token check already read: no second query.
        account = current_principal().account
        return json_response(user_view(account), etag=f'"{account.version}"')

    @require_auth()
    @operation(
        operation_id="updateMe",
        tag="me",
        replies=[
            Reply(
                200,
                "The updated profile.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=MeUpdate,
    )
    def patch(self) -> Response:
        """Update my profile

        Changes display name and/or time zone (IANA name). Needs `If-Match` with the current
        ETag: 428 without it, 412 when stale (checked before the body is read).
        """
        user = current_principal().user
        require_if_match(user.etag)
        data = load_body(_me_update)
        for key, value in data.items():
            setattr(user, key, value)
        user.bump_version()
        db = get_db()
        db.commit()
        db.refresh(user)
        return json_response(user_view(user), etag=user.etag)


@me_ns.route("/password")
class MyPassword(Resource):
    @require_auth()
    @operation(
        operation_id="changeMyPassword",
        tag="me",
        replies=[
            Reply(204, "Password changed."),
        ],
        problems=(400, 401, 403, 413, 415, 422, 429, 500),
        body=PasswordChangeIn,
    )
    def post(self) -> Response:
        """Change my password

        Checks the current password (422 on `current_password` when wrong) and the policy for
        the new one (422 on `new_password`). Every other session of the caller ends; this one
        stays valid.
        """
        principal = current_principal()
        data = load_body(_password_in)
        db = get_db()
        change_password(
            db=db,
            passwords=_services().passwords,
            user=principal.user,
            keep_family_id=principal.claims.family_id,
            now=utcnow(),
            **data,
        )
        db.commit()
        return empty_response()


@users_ns.route("")
class Users(Resource):
    @require_auth(Role.admin)
    @operation(
        operation_id="createUser",
        tag="users",
        replies=[
            Reply(
                201,
                "The new account.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 409, 413, 415, 422, 429, 500),
        body=UserCreateIn,
    )
    def post(self) -> Response:
        """Create a staff account

        Operator (`admin`) only. Creates a staff account (`clinician`) or another operator
        (`admin`); 409 when the email is taken. A staff account made here belongs to no
        organisation until it takes up a staff invite
        (`POST /api/v1/auth/staff-invites/accept`, with its password).
        """
        data = load_body(_user_create_in)
        db = get_db()
        user = create_user(
            db=db, passwords=_services().passwords, **{**data, "role": Role(data["role"])}
        )
        db.commit()
        return json_response(user_view(user), 201, etag=user.etag)


def _user_or_404(user_id: str) -> User:
    try:
        user = get_db().get(User, uuid.UUID(user_id))
    except ValueError:
        user = None
    if user is None:
        raise not_found()
    return user


@users_ns.route("/<user_id>")
class UserItem(Resource):
    @require_auth(Role.admin)
    @operation(
        operation_id="getUser",
        tag="users",
        replies=[
            Reply(
                200,
                "The account.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 500),
    )
    def get(self, user_id: str) -> Response:
        """One account

        Admin only. Any account by id; 404 when there is none.
        """
        user = _user_or_404(user_id)
        return json_response(user_view(user), etag=user.etag)

    @require_auth(Role.admin)
    @operation(
        operation_id="updateUser",
        tag="users",
        replies=[
            Reply(
                200,
                "The updated account.",
                schema=UserOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=UserUpdate,
    )
    def patch(self, user_id: str) -> Response:
        """Disable or re-enable an account

        Admin only. A disabled user's tokens fail at once and they cannot log in. Needs
        `If-Match` (428 without, 412 stale; checked before the body is read).
        """
        user = _user_or_404(user_id)
        require_if_match(user.etag)
        data = load_body(_user_update)
        if data["disabled"] and user.disabled_at is None:
            user.disabled_at = utcnow()
        elif not data["disabled"]:
            user.disabled_at = None
        user.bump_version()
        db = get_db()
        db.commit()
        db.refresh(user)
        return json_response(user_view(user), etag=user.etag)
