"""Register, log in, rotate and revoke tokens; one's own profile; staff accounts."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app
from flask_restx import Namespace, Resource

from api.audit import note_actor
from api.auth import STAFF_ROLES, current_principal, require_auth
from api.db import get_db
from api.errors import not_found
from api.http import empty_response, json_response, load_body, require_if_match
from api.limits import client_address
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
_token_out, _user_out, _mfa_out = TokenPairOut(), UserOut(), MfaRequiredOut()
_me_update, _password_in = MeUpdate(), PasswordChangeIn()
_user_create_in, _user_update = UserCreateIn(), UserUpdate()
_accepted_out, _confirm_in = RegisterAcceptedOut(), RegisterConfirmIn()


def _services() -> Any:
    return current_app.extensions["moodtrack"]


def user_view(user: User) -> dict[str, Any]:
    """A user as UserOut renders it."""
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


def token_pair(user: User, family_id: uuid.UUID, refresh_token: str) -> dict[str, Any]:
    """A fresh access token for the session, with its refresh token, as TokenPairOut."""
    services = _services()
    tokens = services.tokens
    access = tokens.issue(user_id=user.id, role=user.role.value, family_id=family_id, now=utcnow())
    enrol = (
        services.settings.require_staff_2fa
        and user.role in STAFF_ROLES
        and not has_second_factor(db=get_db(), user_id=user.id)
    )
    return _token_out.dump(
        {
            "access_token": access,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": int(tokens.ttl.total_seconds()),
            "second_factor_enrolment_required": enrol,
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
    def post(self) -> Response:
        """Start a patient sign-up: the same 202 whether or not the email has an account."""
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
    def post(self) -> Response:
        """Finish a sign-up with the emailed code and its password: the account is made."""
        data = load_body(_confirm_in)
        db = get_db()
        user = confirm_signup(db=db, passwords=_services().passwords, now=utcnow(), **data)
        note_actor(user)
        db.commit()
        return json_response(user_view(user), 201, etag=user.etag)


@auth_ns.route("/login")
class Login(Resource):
    def post(self) -> Response:
        """Exchange email and password for a token pair."""
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
    def post(self) -> Response:
        """Rotate a refresh token: a new pair, the old token dead."""
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
    def post(self) -> Response:
        """End this session: its refresh family and this access token."""
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
    def get(self) -> Response:
        """The caller's profile."""
        user = current_principal().user
        return json_response(user_view(user), etag=user.etag)

    @require_auth()
    def patch(self) -> Response:
        """Change display name or time zone (If-Match required)."""
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
    def post(self) -> Response:
        """Change password; every other session of the caller ends."""
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
    def post(self) -> Response:
        """Create a clinician or admin account."""
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
    def get(self, user_id: str) -> Response:
        """One account."""
        user = _user_or_404(user_id)
        return json_response(user_view(user), etag=user.etag)

    @require_auth(Role.admin)
    def patch(self, user_id: str) -> Response:
        """Disable or re-enable an account; a disabled user's tokens fail at once."""
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
