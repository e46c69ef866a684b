"""Abuse limits with Flask-Limiter: login and sign-up per client address, login per account,
invites per clinician, password checks and writes per user.

Counted in the storage ``MOODTRACK_RATELIMIT_STORAGE_URL`` names: ``memory://`` counts per
worker process, a Redis URL counts once for every worker and host that shares it. Every limit
is an application-wide limit with its own scope, so the views stay free of limiter decorators
and one table here says what is limited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import ApplicationLimit, Limiter
from werkzeug.exceptions import HTTPException

from api.auth import verified_claims
from api.config import Settings
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
_REDIS_OPTIONS: dict[str, str | int] = {"socket_connect_timeout": 1, "socket_timeout": 1}


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
    named = f"{email_key(email)}|{client_address()}".encode()
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


def _only(*operations: tuple[str, str]) -> Callable[[], bool]:
    """An ``exempt_when`` that exempts every request but the given (method, route) pairs."""
    wanted = frozenset(operations)

    def exempt() -> bool:
        return (request.method, _route()) not in wanted

    return exempt


def _not_a_user_write() -> bool:
    route = _route()
    return (
        request.method not in WRITE_METHODS
        or route is None
        or not route.startswith(f"{API_PREFIX}/")
        or route in _NOT_PER_USER
    )


def _limits(settings: Settings) -> list[tuple[str, Callable[[], str], str, Callable[[], bool]]]:
    """(limit, key, scope, exempt_when) of every limit: the one table of what is limited."""
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
        (limits.writes_per_user, user_key, "writes-user", _not_a_user_write),
    ]


def init_limiter(app: Flask, settings: Settings) -> Limiter:
    """Attach the limiter; call after the request-id hook so a 429 carries its request id."""
    limits = settings.rate_limits
    memory = limits.storage_url.startswith("memory://")
    table = _limits(settings)
    limiter = Limiter(
        client_address,
        application_limits=[
            ApplicationLimit(value, key_function=key, scope=scope, exempt_when=exempt)
            for value, key, scope, exempt in table
        ],
        storage_uri=limits.storage_url,
        storage_options={} if memory else dict(_REDIS_OPTIONS),
        # Exact under bursts: a fixed window lets 2N through across a window boundary.
        strategy="moving-window",
        key_prefix=limits.key_prefix,
        # api.error_handler renders the 429 and its Retry-After; no X-RateLimit-* on every response.
        headers_enabled=False,
        # Fail open when the store is unreachable: a patient's entry (a crisis answer, say)
        # must not be refused because Redis is down; the account lockout still holds.
        swallow_errors=True,
    )
    exemptions = tuple(exempt for *_, exempt in table)

    @limiter.request_filter
    def _no_limit_applies() -> bool:
        # Flask-Limiter parses every limit string and builds its limit objects on each
        # request before asking exempt_when; most requests (every read) fall under no limit,
        # so asking first spares them that work: GET /me in process, 950 -> 790 µs.
        return all(exempt() for exempt in exemptions)

    limiter.init_app(app)
    if memory and settings.env == "production":
        log.warning(
            "rate limits are counted per worker process",
            extra={"fields": {"hint": "set MOODTRACK_RATELIMIT_STORAGE_URL to a redis:// URL"}},
        )
    return limiter


def retry_after_seconds() -> int:
    """Seconds until the limit this request broke admits a request again (at least 1)."""
    limiter: Limiter | None = getattr(_services(), "limiter", None)
    try:
        current = limiter.current_limit if limiter is not None else None
        if current is not None and current.breached:
            # window[0] is when the oldest counted request leaves the window (reset_at rounds up).
            return max(1, math.ceil(current.window[0] - time.time()))
    except Exception:  # the store vanished between the check and this read
        log.warning("rate limit window unreadable")
    return 60
