"""Who is calling: bearer-token authentication and role checks for views."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy import Row

from api.audit import note_emergency, note_patients
from api.db import get_connection, get_db, settings
from api.errors import ApiError, not_found, unauthorized
from api.http import path_id
from api.tokens import AccessClaims, TokenRejected
from models.accounts import Role, User, load_principal
from models.base import utcnow
from models.organisations import MemberRole, Organisation, active_membership
from models.second_factor import has_second_factor
from models.visibility import Access, patient_access

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of this request."""

    # The caller's profile as the token check read it (models.accounts.PROFILE_COLUMNS).
    account: Row[Any]
    claims: AccessClaims

    @property
    def id(self) -> uuid.UUID:
        """The caller's user id."""
        return self.account.id

    @property
    def role(self) -> Role:
        """The caller's role."""
        return self.account.role

    @property
    def user(self) -> User:
        """The caller's ``User``, loaded on first use: only views that change the account
        need more than ``id``, ``role`` and the profile (the session keeps it after that)."""
        user = get_db().get(User, self.account.id)
        if user is None:  # erased between the token check and now
            raise unauthorized()
        return user


def _bearer_token() -> str:
    if "access_token" in request.args or "token" in request.args:
        # Tokens in URLs end up in logs and browser history; refuse them outright.
        raise unauthorized("Send the token in the Authorization header, never in the URL.")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    return token.strip()


def verified_claims(token: str) -> AccessClaims:
    """The token's verified claims, checked once per request (the rate limiter asks too)."""
    cached = g.get("verified_token")
    if cached is not None and cached[0] == token:
        return cached[1]
    claims = current_app.extensions["moodtrack"].tokens.verify(token)
    g.verified_token = (token, claims)
    return claims


def authenticate_request() -> Principal:
    """Verify the bearer token and load its live user, once per request."""
    if "principal" in g:
        return g.principal
    try:
        claims = verified_claims(_bearer_token())
    except TokenRejected:
        raise unauthorized() from None
    account = load_principal(
        connection=get_connection(),
        user_id=claims.user_id,
        family_id=claims.family_id,
        jti=claims.jti,
    )
    if account is None:
        raise unauthorized()
    g.principal = Principal(account=account, claims=claims)
    return g.principal


STAFF_ROLES = frozenset({Role.clinician, Role.admin})


def enrolment_required(principal: Principal) -> bool:
    """A staff account without 2FA while MOODTRACK_REQUIRE_STAFF_2FA is on (may only enrol)."""
    if principal.role not in STAFF_ROLES or not settings().require_staff_2fa:
        return False
    if "has_second_factor" not in g:
        g.has_second_factor = has_second_factor(db=get_db(), user_id=principal.id)
    return not g.has_second_factor


def require_auth(*roles: Role, allow_unenrolled: bool = False) -> Callable[[F], F]:
    """View decorator: a valid token, and one of ``roles`` when given (else 403).

    Staff who must use 2FA and have not enrolled get 403 everywhere but the views marked
    ``allow_unenrolled`` (enrolment itself, and logout).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate_request()
            if not allow_unenrolled and enrolment_required(principal):
                raise ApiError(
                    403,
                    "Staff must turn on two-factor sign-in first: POST /api/v1/auth/2fa/enrol, "
                    "then POST /api/v1/auth/2fa/confirm.",
                    slug="second-factor-enrolment-required",
                    title="Two-factor enrolment required",
                )
            if roles and principal.role not in roles:
                raise ApiError(403, "Your role may not use this operation.", slug="forbidden")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def current_principal() -> Principal:
    """The caller, for views behind ``require_auth``."""
    return g.principal


def resolve_patient_id(raw: str) -> uuid.UUID:
    """Turn ``{patient_id}`` (a UUID or ``me``) into a patient the caller may see, else 404."""
    principal = current_principal()
    if raw == "me":
        if principal.role != Role.patient:
            raise not_found()
        note_patients([principal.id])
        return principal.id
    patient_id = path_id(raw)
    access = patient_access(db=get_db(), viewer=principal, patient_id=patient_id, now=utcnow())
    if access is None:
        raise not_found()
    if access == Access.emergency:
        note_emergency()
    note_patients([patient_id])
    return patient_id


def resolve_patient_for_write(raw: str) -> uuid.UUID:
    """Like ``resolve_patient_id``, but only the patient themself may write (else 403)."""
    patient_id = resolve_patient_id(raw)
    if current_principal().id != patient_id:
        raise ApiError(403, "Only the patient records this data.", slug="forbidden")
    return patient_id


def organisation_as_admin(raw: str) -> Organisation:
    """``{organisation_id}`` for an org admin of it; 403 for its other members, 404 for
    everyone else (an organisation one does not belong to does not exist for them)."""
    principal = current_principal()
    organisation_id = path_id(raw)
    db = get_db()
    membership = db.scalars(
        active_membership(user_id=principal.id, organisation_id=organisation_id)
    ).one_or_none()
    organisation = db.get(Organisation, organisation_id) if membership is not None else None
    if membership is None or organisation is None:
        raise not_found()
    if membership.role != MemberRole.org_admin.value:
        raise ApiError(403, "Only the organisation's admins may do this.", slug="forbidden")
    return organisation
