"""Abuse limits, counted with the ``limits`` library: login and sign-up per client address,
login per account, invites per clinician, password checks and writes per user.

Counted in the storage ``MOODTRACK_RATELIMIT_STORAGE_URL`` names: ``memory://`` counts per
worker process, a Redis URL counts once for every worker and host that shares it. Every limit
is checked before the request with its own scope, so the views stay free of limiter
decorators and one table here says what is limited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import HTTPException

from api.auth import verified_claims
from api.config import Settings
from api.errors import ApiError
from api.jsonbody import MalformedJson, decode_json
from api.tokens import TokenRejected
from models.accounts import email_key

log = logging.getLogger("moodtrack")

API_PREFIX = "/api/v1"
LOGIN = f"{API_PREFIX}/auth/login"
REGISTER = f"{API_PREFIX}/auth/register"
REGISTER_CONFIRM = f"{API_PREFIX}/auth/register/confirm"
INVITES = f"{API_PREFIX}/invites"
ME = f"{API_PREFIX}/me"
PASSWORD = f"{API_PREFIX}/me/password"
STAFF_ACCEPT = f"{API_PREFIX}/auth/staff-invites/accept"
ENROL = f"{API_PREFIX}/auth/2fa/enrol"
CONFIRM = f"{API_PREFIX}/auth/2fa/confirm"
VERIFY = f"{API_PREFIX}/auth/2fa/verify"
SECOND_FACTOR = f"{API_PREFIX}/auth/2fa"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sign-up and login are counted by address and account instead: there is no user yet.
_NOT_PER_USER = frozenset({LOGIN, REGISTER, REGISTER_CONFIRM, STAFF_ACCEPT, VERIFY})
# A Redis that hangs must not hang requests: give up quickly and let the request through.
REDIS_OPTIONS: dict[str, str | int] = {"socket_connect_timeout": 1, "socket_timeout": 1}


def client_address() -> str:
    """The caller's address; behind ``MOODTRACK_TRUSTED_PROXIES`` proxies ProxyFix sets it."""
    return request.remote_addr or "unknown"


def _route() -> str | None:
    return request.url_rule.rule if request.url_rule is not None else None


def _services() -> Any:
    return current_app.extensions["moodtrack"]


def account_key() -> str:
    """The account a login names and the address it comes from, as a keyed digest (emails
    never reach the limiter's store). Per address: a limit per account alone would let
    anyone, anywhere, keep the account's owner out by sending logins for it."""
    try:
        payload = decode_json(request.get_data(cache=True))
    except (MalformedJson, HTTPException):
        # Malformed or oversized (413): the view answers that; count by address meanwhile.
        payload = None
    email = payload.get("email") if isinstance(payload, dict) else None
    if not isinstance(email, str) or not email.strip():
        # A login without an email fails validation anyway; count it by address.
        return f"address:{client_address()}"
    settings: Settings = _services().settings
    secret = hashlib.sha256(
        b"moodtrack-ratelimit:" + settings.signing_keys[settings.active_kid]
    ).digest()
    # surrogatepass: a lone surrogate in the email (which validation refuses) still has bytes.
    named = f"{email_key(email)}|{client_address()}".encode(errors="surrogatepass")
    digest = hmac.new(secret, named, hashlib.sha256).hexdigest()
    return f"account:{digest[:32]}"


def user_key() -> str:
    """The bearer token's user (signature checked, no database query), else the address."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        try:
            claims = verified_claims(token.strip())
        except TokenRejected:
            pass
        else:
            return f"user:{claims.user_id}"
    # No valid token (refresh, or a request that will be 401): count it by address.
    return f"address:{client_address()}"


def second_factor_key() -> str:
    """The user a 2FA attempt is for: the bearer's, or the login step's (``mfa_token``)."""
    if request.path == VERIFY:
        try:
            payload = decode_json(request.get_data(cache=True))
            token = payload.get("mfa_token") if isinstance(payload, dict) else None
            if isinstance(token, str):
                return f"user:{_services().tokens.verify_mfa(token).user_id}"
        except (MalformedJson, HTTPException, TokenRejected):
            pass
        return f"address:{client_address()}"
    return user_key()


def _only(*operations: tuple[str, str]) -> Callable[[str, str | None], bool]:
    """Applies to the given (method, route) pairs only."""
    wanted = frozenset(operations)

    def applies(method: str, route: str | None) -> bool:
        return (method, route) in wanted

    return applies


def _user_write(method: str, route: str | None) -> bool:
    return (
        method in WRITE_METHODS
        and route is not None
        and route.startswith(f"{API_PREFIX}/")
        and route not in _NOT_PER_USER
    )


Applies = Callable[[str, str | None], bool]


def _limits(settings: Settings) -> list[tuple[str, Callable[[], str], str, Applies]]:
    """(limit, key, scope, applies to (method, route)) of every limit: the one table of what
    is limited."""
    limits = settings.rate_limits
    return [
        (
            limits.login_per_address,
            client_address,
            "login-address",
            _only(("POST", LOGIN), ("POST", VERIFY)),
        ),
        (limits.login_per_account, account_key, "login-account", _only(("POST", LOGIN))),
        (
            limits.register_per_address,
            client_address,
            "register-address",
            _only(("POST", REGISTER), ("POST", REGISTER_CONFIRM), ("POST", STAFF_ACCEPT)),
        ),
        (limits.invites_per_clinician, user_key, "invites-user", _only(("POST", INVITES))),
        # Each of these checks the password: a stolen access token must not become an oracle.
        (
            limits.password_checks_per_user,
            user_key,
            "password-user",
            _only(("DELETE", ME), ("POST", PASSWORD), ("POST", ENROL), ("DELETE", SECOND_FACTOR)),
        ),
        # A code has a million values: guessing one must stay slow per account.
        (
            limits.second_factor_per_user,
            second_factor_key,
            "second-factor-user",
            _only(("POST", VERIFY), ("POST", CONFIRM), ("DELETE", SECOND_FACTOR)),
        ),
        (limits.writes_per_user, user_key, "writes-user", _user_write),
    ]


@dataclass(frozen=True)
class _Limit:
    """One row of the table, its limit strings parsed once at start."""

    items: tuple[RateLimitItem, ...]
    key: Callable[[], str]
    scope: str
    applies: Applies


class RateLimiter:
    """Counts requests against the table's limits with the ``limits`` library's moving window.

    The library Flask-Limiter is built on, used directly: Flask-Limiter parsed every limit
    string and built its limit objects on every request, a seventh of an authenticated
    write's Python time under load; here the table is parsed once, a request that no limit
    applies to (every read) costs a few set lookups, and one that is limited costs a Redis
    round trip per limit item ("10/minute;50/hour" is two; one script call each).
    """

    def __init__(self, settings: Settings) -> None:
        limits = settings.rate_limits
        # memory:// counts in this process only; a Redis URL counts for every worker and host.
        self.per_process = limits.storage_url.startswith("memory://")
        options = {} if self.per_process else dict(REDIS_OPTIONS)
        self._storage = storage_from_string(limits.storage_url, **options)
        # Exact under bursts: a fixed window lets 2N through across a window boundary.
        self._window = MovingWindowRateLimiter(self._storage)
        self._prefix = limits.key_prefix
        self._table = tuple(
            _Limit(tuple(parse_many(value)), key, scope, applies)
            for value, key, scope, applies in _limits(settings)
        )

    def check(self) -> None:
        """Count this request under every limit that applies to it; 429 when one is spent.

        Fails open when the store is unreachable: a patient's entry (a crisis answer, say)
        must not be refused because Redis is down; the account lockout still holds."""
        method, route = request.method, _route()
        for limit in self._table:
            if not limit.applies(method, route):
                continue
            # Flask-Limiter's order (prefix, key, scope): counts survive the change of library.
            identifiers = (self._prefix, _key_of(limit), limit.scope)
            for item in limit.items:
                try:
                    allowed = self._window.hit(item, *identifiers)
                except Exception:  # redis-py's errors, whatever the store's state
                    log.warning("rate limit store unreachable; request let through")
                    return
                if not allowed:
                    raise _too_many(self._wait_seconds(item, identifiers))

    def _wait_seconds(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        """Seconds until the spent window admits a request again (at least 1)."""
        try:
            reset_at = self._window.get_window_stats(item, *identifiers).reset_time
        except Exception:  # the store vanished between the hit and this read
            log.warning("rate limit window unreadable")
            return 60
        return max(1, math.ceil(reset_at - time.time()))

    def reset(self) -> None:
        """Forget every count (tests)."""
        self._storage.reset()


def _key_of(limit: _Limit) -> str:
    """The key this request counts under; by address if the body defeats the key function
    (the view then refuses the body itself), never a 500 and never uncounted."""
    try:
        return limit.key()
    except Exception:
        log.warning("rate limit key unreadable; counted by address")
        return f"address:{client_address()}"


def _too_many(wait: int) -> ApiError:
    return ApiError(
        429,
        "Too many requests; try again after the number of seconds in Retry-After.",
        slug="too-many-requests",
        headers={"Retry-After": str(wait)},
    )


def init_limiter(app: Flask, settings: Settings) -> RateLimiter:
    """Check the limits before every request; call after the request-id hook so a 429
    carries its request id."""
    limiter = RateLimiter(settings)
    app.before_request(limiter.check)
    if limiter.per_process and settings.env == "production":
        log.warning(
            "rate limits are counted per worker process",
            extra={"fields": {"hint": "set MOODTRACK_RATELIMIT_STORAGE_URL to a redis:// URL"}},
        )
    return limiter
