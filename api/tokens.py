"""Access tokens: short-lived JWTs signed with a key chosen by ``kid`` from a fixed ring."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from api.config import Settings

ALGORITHM = "HS256"  # pinned: the header's alg is never trusted
ACCESS_TYPE = "access"
# "Second factor required": proves the password was right, opens nothing but /auth/2fa/verify.
MFA_TYPE = "mfa"
MFA_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ"]
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid"]
VERIFIED_LIMIT = 10_000  # tokens remembered per process (about 4 MB)


class TokenRejected(Exception):
    """The token is not one this service issued and still honours."""


@dataclass(frozen=True)
class MfaClaims:
    """What a verified second-factor token says."""

    user_id: uuid.UUID
    jti: str
    expires_at: datetime


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    user_id: uuid.UUID
    family_id: uuid.UUID
    jti: str
    role: str
    expires_at: datetime


class TokenService:
    """Issues and verifies access tokens against the configured key ring."""

    def __init__(self, settings: Settings) -> None:
        self._keys = dict(settings.signing_keys)
        self._active_kid = settings.active_kid
        self._issuer = settings.issuer
        self._audience = settings.audience
        self.ttl = settings.access_ttl
        self.mfa_ttl = settings.mfa_token_ttl
        # Tokens this process has verified: token -> (kid, exp, claims). A phone sends one
        # access token for up to 15 minutes, and PyJWT's checks were a seventh of GET /me's
        # Python time under load. Only the exact same string hits; on every hit the key
        # must still be in the ring and the token unexpired (nbf and iat, once passed, stay
        # passed). Revocation is load_principal's job, for a cached token as for a new one.
        self._verified: dict[str, tuple[str, int, AccessClaims]] = {}

    def issue(self, *, user_id: uuid.UUID, role: str, family_id: uuid.UUID, now: datetime) -> str:
        """A signed access token for one session of one user."""
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "typ": ACCESS_TYPE,
            "sid": str(family_id),
            "role": role,
        }
        return jwt.encode(
            claims,
            self._keys[self._active_kid],
            algorithm=ALGORITHM,
            headers={"kid": self._active_kid},
        )

    def issue_mfa(self, *, user_id: uuid.UUID, now: datetime) -> str:
        """A short-lived token that names a user whose password was right."""
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.mfa_ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "typ": MFA_TYPE,
        }
        return jwt.encode(
            claims,
            self._keys[self._active_kid],
            algorithm=ALGORITHM,
            headers={"kid": self._active_kid},
        )

    def verify_mfa(self, token: str) -> MfaClaims:
        """Check a second-factor token as strictly as an access token (never cached)."""
        _kid, claims = self._decode(token, MFA_REQUIRED_CLAIMS)
        if claims.get("typ") != MFA_TYPE:
            raise TokenRejected("not a second-factor token")
        try:
            return MfaClaims(
                user_id=uuid.UUID(claims["sub"]),
                jti=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (ValueError, TypeError, AttributeError, OverflowError):
            raise TokenRejected("invalid claims") from None

    def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm, key id, times, issuer, audience and type."""
        hit = self._verified.get(token)
        if hit is not None:
            kid, expires, claims = hit
            # PyJWT's rule: valid while now < exp.
            if kid in self._keys and time.time() < expires:
                return claims
            self._verified.pop(token, None)
        kid, expires, claims = self._verify(token)
        if len(self._verified) >= VERIFIED_LIMIT:
            self._verified.clear()
        self._verified[token] = (kid, expires, claims)
        return claims

    def _decode(self, token: str, required: list[str]) -> tuple[str, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise TokenRejected("unknown key")
        try:
            return kid, jwt.decode(
                token,
                self._keys[kid],
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": required, "strict_aud": True},
            )
        except jwt.PyJWTError:
            raise TokenRejected("invalid") from None

    def _verify(self, token: str) -> tuple[str, int, AccessClaims]:
        kid, claims = self._decode(token, REQUIRED_CLAIMS)
        if claims.get("typ") != ACCESS_TYPE:
            raise TokenRejected("not an access token")
        try:
            return (
                kid,
                int(claims["exp"]),
                AccessClaims(
                    user_id=uuid.UUID(claims["sub"]),
                    family_id=uuid.UUID(claims["sid"]),
                    jti=str(claims["jti"]),
                    role=str(claims.get("role", "")),
                    expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                ),
            )
        except (ValueError, TypeError, AttributeError, OverflowError):
            raise TokenRejected("invalid claims") from None
