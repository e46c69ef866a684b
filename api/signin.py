"""What a successful sign-in answers: the token pair (login, refresh, sign-up, 2FA)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app

from api.auth import STAFF_ROLES
from api.db import get_db
from models.accounts import User
from models.base import utcnow
from models.second_factor import has_second_factor
from schemas.accounts import TokenPairOut

_token_out = TokenPairOut()


def token_pair(user: User, family_id: uuid.UUID, refresh_token: str) -> dict[str, Any]:
    """A fresh access token for the session, with its refresh token, as TokenPairOut."""
    services = current_app.extensions["moodtrack"]
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
