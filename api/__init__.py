"""The moodtrack API: ``create_app()`` builds a ready WSGI app (gunicorn 'api:create_app()')."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_cors import CORS
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

from api.audit import install_audit
from api.config import Settings, load_settings
from api.db import close_db, make_engine, make_session_factory
from api.error_handler import handle_any
from api.headers import install_security_headers
from api.limits import RateLimiter, init_limiter
from api.logs import configure_logging, install_request_hooks
from api.mail import Mailer, MemoryMailer
from api.meta import meta
from api.resources import build_api
from api.tokens import TokenService
from models.passwords import Passwords
from models.second_factor import RECOVERY_CODE_ARGON2
from models.secretbox import SecretBox, derive_key

MAX_BODY_BYTES = 1024 * 1024
# How many functions MoodtrackFlask remembers as synchronous (hooks and views: about 200).
SYNC_FUNCTIONS_LIMIT = 1024


class MoodtrackFlask(Flask):
    """Flask, remembering that its hooks and views are synchronous.

    Flask asks of every hook and view, on every request, whether it is a coroutine function
    (``ensure_sync``, which Flask's docs say may be overridden): inspect reads its code
    flags eight times per GET /me, 3 % of its Python time. The answer never changes, so it
    is kept per function: a bound method by its function (flask-restx binds a new Resource
    per request), and a function Flask asks about only once (``after_this_request``)
    cannot make the memory grow past the limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synchronous: set[Callable[..., Any]] = set()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)
        if key in self._synchronous:
            return func
        ready = super().ensure_sync(func)
        if ready is func:  # synchronous: Flask calls it as it is
            if len(self._synchronous) >= SYNC_FUNCTIONS_LIMIT:
                self._synchronous.clear()
            self._synchronous.add(key)
        return ready


@dataclass
class Services:
    """Everything a request may need, built once per app."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    tokens: TokenService
    passwords: Passwords
    # TOTP seeds at rest, and the cheap hashing of high-entropy recovery codes.
    secret_box: SecretBox
    recovery_codes: Passwords
    mailer: Mailer | MemoryMailer
    # Key of the digests login failures are counted under (models.throttle).
    throttle_secret: bytes
    limiter: RateLimiter | None = None


def _freeze_heap_at_fork() -> None:
    # gunicorn --preload builds the app once and forks its workers from it: everything built
    # by then (routes, schemas, mappers, compiled statements: about 160,000 objects) lives
    # as long as the worker. Frozen just before the fork (gc.freeze, as Python's gc docs
    # advise for fork without exec), the collector never walks them again in the workers,
    # and their pages stay shared with the parent instead of being copied when a collection
    # touches their headers. In process, a trend request spends about 5 % less time. The
    # parent unfreezes at once: the gunicorn master forks again on every respawn, and
    # `moodtrack serve`'s supervisor forks its children; their own garbage stays collectable.
    os.register_at_fork(before=gc.freeze, after_in_parent=gc.unfreeze)


_freeze_heap_at_fork()


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the app from ``config`` (Settings, or overrides of the environment's settings)."""
    settings = config if isinstance(config, Settings) else load_settings()
    if isinstance(config, dict):
        settings = settings.with_overrides(**config)
    configure_logging(settings.log_level)

    app = MoodtrackFlask(__name__, instance_path=str(settings.instance_path))
    # A path with an empty segment (`sessions//observations`, an app's missing id) is a 404,
    # not a redirect: werkzeug's slash-merging redirect raised inside flask-restx's error
    # router for methods the merged path lacks, answering 500 HTML. Set before any route.
    app.url_map.merge_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        RESTX_ERROR_404_HELP=False,
        ERROR_INCLUDE_MESSAGE=False,
        PROPAGATE_EXCEPTIONS=False,
        TESTING=settings.testing,
        JSON_SORT_KEYS=False,
    )
    engine = make_engine(settings.database_url)
    app.extensions["moodtrack"] = Services(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        tokens=TokenService(settings),
        passwords=Passwords(settings.argon2),
        secret_box=_secret_box(settings),
        recovery_codes=Passwords(RECOVERY_CODE_ARGON2),
        mailer=Mailer(
            url=settings.smtp_url or None,
            sender=settings.mail_from,
            outbox=settings.instance_path / "outbox",
        ),
        throttle_secret=derive_key(settings.signing_keys[settings.active_kid], "login-throttle"),
    )
    if settings.cors_origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origins)}},
            expose_headers=["ETag", "X-Request-ID", "Retry-After"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Idempotency-Key"],
        )

    app.register_blueprint(meta)
    build_api(app)
    app.register_error_handler(Exception, handle_any)
    app.teardown_appcontext(close_db)
    install_request_hooks(app)
    install_security_headers(app, settings)
    # After the request-id hook, so a 429 carries its request id like any other error.
    app.extensions["moodtrack"].limiter = init_limiter(app, settings)
    # Registered last so it runs first: it may still replace a read with a 503.
    install_audit(app)
    if settings.trusted_proxies:
        # Only behind proxies we run: else a client could forge X-Forwarded-For and pick
        # the address its limits are counted under.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    return app


def _secret_box(settings: Settings) -> SecretBox:
    if settings.totp_keys:
        return SecretBox(settings.totp_keys, settings.active_totp_kid)
    # Settings built in code (tests, benchmarks) without a TOTP ring: one derived from the
    # signing key; load_settings() always gives a ring of its own.
    derived = derive_key(settings.signing_keys[settings.active_kid], "totp-key")
    return SecretBox({"derived": derived}, "derived")
