"""Configuration from environment variables (each one is in the README's table)."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from limits import parse_many

from api.mail import MailConfigError, parse_smtp_url
from models.outcomes import RuleSet
from models.passwords import Argon2Params

MIN_KEY_BYTES = 32
DEFAULT_CRISIS_TEXT = (
    "If you are thinking about harming yourself, call or text 988 (Suicide & Crisis "
    "Lifeline, US) now. If you are in immediate danger, call 911. Entries in this app "
    "are not monitored in real time."
)
# (name, contact) pairs shown with the crisis text; MOODTRACK_CRISIS_RESOURCES replaces them.
DEFAULT_CRISIS_RESOURCES: tuple[tuple[str, str], ...] = (
    ("988 Suicide & Crisis Lifeline", "Call or text 988"),
    ("Emergency services", "911"),
)


DEFAULT_MAIL_FROM = "moodtrack <no-reply@localhost>"


class ConfigError(RuntimeError):
    """The environment does not describe a service that may start."""


# A limit no test run reaches: Settings built directly (as the tests do) keep the limiter
# running on every request without ever tripping it; tests of the limits set low ones.
UNREACHABLE_LIMIT = "1000000/minute"


@dataclass(frozen=True)
class RateLimits:
    """Abuse limits in Flask-Limiter notation ("10/minute;50/hour") and where they are counted."""

    storage_url: str = "memory://"
    key_prefix: str = "moodtrack"
    login_per_address: str = UNREACHABLE_LIMIT
    login_per_account: str = UNREACHABLE_LIMIT
    register_per_address: str = UNREACHABLE_LIMIT
    invites_per_clinician: str = UNREACHABLE_LIMIT
    writes_per_user: str = UNREACHABLE_LIMIT
    password_checks_per_user: str = UNREACHABLE_LIMIT
    second_factor_per_user: str = UNREACHABLE_LIMIT


# What load_settings() applies when the environment is silent (the README's defaults):
# (field of RateLimits, environment variable, default).
RATE_LIMIT_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("storage_url", "MOODTRACK_RATELIMIT_STORAGE_URL", "memory://"),
    ("key_prefix", "MOODTRACK_RATELIMIT_KEY_PREFIX", "moodtrack"),
    ("login_per_address", "MOODTRACK_RATELIMIT_LOGIN_PER_ADDRESS", "30/minute;300/hour"),
    ("login_per_account", "MOODTRACK_RATELIMIT_LOGIN_PER_ACCOUNT", "10/minute;50/hour"),
    ("register_per_address", "MOODTRACK_RATELIMIT_REGISTER_PER_ADDRESS", "20/hour;100/day"),
    ("invites_per_clinician", "MOODTRACK_RATELIMIT_INVITES_PER_CLINICIAN", "30/hour;200/day"),
    ("writes_per_user", "MOODTRACK_RATELIMIT_WRITES_PER_USER", "120/minute"),
    ("password_checks_per_user", "MOODTRACK_RATELIMIT_PASSWORD_CHECKS_PER_USER", "10/hour"),
    ("second_factor_per_user", "MOODTRACK_RATELIMIT_2FA_PER_USER", "5/minute;20/hour"),
)


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, resolved once at start."""

    env: str = "development"
    database_url: str = ""
    signing_keys: dict[str, bytes] = field(default_factory=dict)
    active_kid: str = ""
    issuer: str = "moodtrack"
    audience: str = "moodtrack-api"
    access_ttl: timedelta = timedelta(minutes=15)
    refresh_ttl: timedelta = timedelta(days=30)
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    instance_path: Path = Path("instance")
    argon2: Argon2Params = field(default_factory=Argon2Params)
    crisis_text: str = DEFAULT_CRISIS_TEXT
    crisis_resources: tuple[tuple[str, str], ...] = DEFAULT_CRISIS_RESOURCES
    rules: RuleSet = field(default_factory=RuleSet)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # How many reverse proxies in front of the app set X-Forwarded-For (0: none trusted).
    trusted_proxies: int = 0
    # Staff (clinicians, org admins, the operator) without 2FA may only enrol.
    require_staff_2fa: bool = False
    # Key ring for TOTP seeds at rest; empty: derived from the active signing key (tests).
    totp_keys: dict[str, bytes] = field(default_factory=dict)
    active_totp_kid: str = ""
    mfa_token_ttl: timedelta = timedelta(minutes=5)
    emergency_access_duration: timedelta = timedelta(hours=1)
    # Where sign-up codes are sent from and through (empty: files under instance/outbox).
    smtp_url: str = ""
    mail_from: str = DEFAULT_MAIL_FROM
    testing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests and the CLI use this)."""
        return replace(self, **changes)


def _parse_keys(spec: str, variable: str = "MOODTRACK_SIGNING_KEYS") -> dict[str, bytes]:
    """Parse ``kid=secret,kid2=secret2``; a secret may be ``base64:...``."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kid, sep, secret = part.partition("=")
        if not sep or not kid or not secret:
            raise ConfigError(f"{variable} must look like 'kid=secret,kid2=secret2'")
        raw = (
            base64.b64decode(secret[len("base64:") :])
            if secret.startswith("base64:")
            else secret.encode()
        )
        if len(raw) < MIN_KEY_BYTES:
            raise ConfigError(f"signing key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")
        keys[kid] = raw
    return keys


def _dev_key(instance_path: Path, name: str = "signing") -> dict[str, bytes]:
    """A development key generated once and kept under instance/."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / f"{name}.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)
    return {"dev": key_file.read_text().strip().encode()}


def _minutes(env: dict[str, str], name: str, default: timedelta) -> timedelta:
    value = env.get(name)
    if not value:
        return default
    try:
        minutes = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of minutes") from None
    if minutes <= 0:
        raise ConfigError(f"{name} must be positive")
    return timedelta(minutes=minutes)


def _crisis_resources(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``[{"name": ..., "contact": ...}, ...]`` as JSON, else the US defaults."""
    if not raw:
        return DEFAULT_CRISIS_RESOURCES
    message = 'MOODTRACK_CRISIS_RESOURCES must be a JSON list of {"name": ..., "contact": ...}'
    try:
        items = json.loads(raw)
    except ValueError:
        raise ConfigError(message) from None
    if not isinstance(items, list) or not items:
        raise ConfigError(message)
    resources = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"name", "contact"}:
            raise ConfigError(message)
        name, contact = item["name"], item["contact"]
        if not (isinstance(name, str) and isinstance(contact, str) and name and contact):
            raise ConfigError(message)
        resources.append((name, contact))
    return tuple(resources)


def _rules(env: dict[str, str]) -> RuleSet:
    """The default clinical rules, with the thresholds the environment overrides."""
    overrides: dict[str, int] = {}
    for name, key in (
        ("MOODTRACK_WORSENING_POINTS", "worsening_points"),
        ("MOODTRACK_POST_SESSION_DROP_POINTS", "post_session_drop_points"),
    ):
        value = env.get(name)
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1")
        overrides[key] = int(value)
    return RuleSet().with_overrides(**overrides)


def _rate_limits(env: dict[str, str]) -> RateLimits:
    """The abuse limits, each checked for Flask-Limiter syntax at start rather than per request."""
    values: dict[str, str] = {}
    for name, variable, default in RATE_LIMIT_VARIABLES:
        value = env.get(variable, "").strip() or default
        if name not in {"storage_url", "key_prefix"}:
            try:
                parse_many(value)
            except ValueError:
                raise ConfigError(
                    f"{variable} must be a rate limit such as '10/minute' or '10/minute;50/hour'"
                ) from None
        values[name] = value
    if not values["storage_url"].startswith(("memory://", "redis://", "rediss://")):
        raise ConfigError("MOODTRACK_RATELIMIT_STORAGE_URL must be memory:// or a redis:// URL")
    return RateLimits(**values)


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ConfigError(f"{name} must be true or false")
    return value in {"1", "true", "yes", "on"}


def _totp_keys(env: dict[str, str], mode: str, instance_path: Path) -> tuple[dict[str, bytes], str]:
    """The TOTP key ring: MOODTRACK_TOTP_KEYS (production needs it), else a development key."""
    keys = _parse_keys(env.get("MOODTRACK_TOTP_KEYS", ""), "MOODTRACK_TOTP_KEYS")
    if not keys:
        if mode == "production":
            raise ConfigError("MOODTRACK_TOTP_KEYS is required when MOODTRACK_ENV=production")
        keys = _dev_key(instance_path, "totp")
    active = env.get("MOODTRACK_ACTIVE_TOTP_KID") or next(iter(keys))
    if active not in keys:
        raise ConfigError("MOODTRACK_ACTIVE_TOTP_KID names no key in MOODTRACK_TOTP_KEYS")
    return keys, active


def _smtp_url(env: dict[str, str], mode: str) -> str:
    url = env.get("MOODTRACK_SMTP_URL", "").strip()
    if not url:
        if mode == "production":
            raise ConfigError("MOODTRACK_SMTP_URL is required when MOODTRACK_ENV=production")
        return ""
    try:
        parse_smtp_url(url)
    except MailConfigError as exc:
        raise ConfigError(str(exc)) from None
    return url


def _emergency_duration(env: dict[str, str]) -> timedelta:
    duration = _minutes(env, "MOODTRACK_EMERGENCY_ACCESS_MINUTES", timedelta(hours=1))
    if duration > timedelta(hours=24):
        raise ConfigError("MOODTRACK_EMERGENCY_ACCESS_MINUTES may be at most 1440")
    return duration


def _trusted_proxies(env: dict[str, str]) -> int:
    value = env.get("MOODTRACK_TRUSTED_PROXIES", "").strip() or "0"
    if not value.isdigit():
        raise ConfigError("MOODTRACK_TRUSTED_PROXIES must be a whole number (0 for none)")
    return int(value)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; refuse an unsafe production setup."""
    env = dict(os.environ if env is None else env)
    mode = env.get("MOODTRACK_ENV", "development")
    if mode not in {"development", "production"}:
        raise ConfigError("MOODTRACK_ENV must be 'development' or 'production'")
    instance_path = Path(env.get("MOODTRACK_INSTANCE_PATH", "instance")).resolve()
    database_url = env.get("DATABASE_URL", "")
    keys = _parse_keys(env.get("MOODTRACK_SIGNING_KEYS", ""))
    if mode == "production":
        if not database_url:
            raise ConfigError("DATABASE_URL is required when MOODTRACK_ENV=production")
        if not keys:
            raise ConfigError("MOODTRACK_SIGNING_KEYS is required when MOODTRACK_ENV=production")
    if not database_url:
        instance_path.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{instance_path / 'moodtrack.db'}"
    if not keys:
        keys = _dev_key(instance_path)
    active_kid = env.get("MOODTRACK_ACTIVE_KID") or next(iter(keys))
    if active_kid not in keys:
        raise ConfigError("MOODTRACK_ACTIVE_KID names no key in MOODTRACK_SIGNING_KEYS")
    access_ttl = _minutes(env, "MOODTRACK_ACCESS_TOKEN_MINUTES", timedelta(minutes=15))
    if access_ttl > timedelta(minutes=15):
        raise ConfigError("MOODTRACK_ACCESS_TOKEN_MINUTES may be at most 15")
    totp_keys, active_totp_kid = _totp_keys(env, mode, instance_path)
    log_level = env.get("MOODTRACK_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(log_level), int):
        raise ConfigError("MOODTRACK_LOG_LEVEL must be a logging level name")
    try:
        argon2 = Argon2Params(
            time_cost=int(env.get("MOODTRACK_ARGON2_TIME_COST", 3)),
            memory_kib=int(env.get("MOODTRACK_ARGON2_MEMORY_KIB", 65536)),
            parallelism=int(env.get("MOODTRACK_ARGON2_PARALLELISM", 4)),
        )
    except ValueError:
        raise ConfigError("MOODTRACK_ARGON2_* must be whole numbers") from None
    return Settings(
        env=mode,
        database_url=database_url,
        signing_keys=keys,
        active_kid=active_kid,
        issuer=env.get("MOODTRACK_ISSUER", "moodtrack"),
        audience=env.get("MOODTRACK_AUDIENCE", "moodtrack-api"),
        access_ttl=access_ttl,
        refresh_ttl=_minutes(env, "MOODTRACK_REFRESH_TOKEN_MINUTES", timedelta(days=30)),
        cors_origins=tuple(
            o.strip() for o in env.get("MOODTRACK_CORS_ORIGINS", "").split(",") if o.strip()
        ),
        log_level=log_level,
        instance_path=instance_path,
        argon2=argon2,
        crisis_text=env.get("MOODTRACK_CRISIS_TEXT", DEFAULT_CRISIS_TEXT),
        crisis_resources=_crisis_resources(env.get("MOODTRACK_CRISIS_RESOURCES")),
        rules=_rules(env),
        rate_limits=_rate_limits(env),
        trusted_proxies=_trusted_proxies(env),
        require_staff_2fa=_flag(env, "MOODTRACK_REQUIRE_STAFF_2FA", mode == "production"),
        emergency_access_duration=_emergency_duration(env),
        smtp_url=_smtp_url(env, mode),
        mail_from=env.get("MOODTRACK_MAIL_FROM", "").strip() or DEFAULT_MAIL_FROM,
        totp_keys=totp_keys,
        active_totp_kid=active_totp_kid,
    )
