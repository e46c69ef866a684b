"""Configuration from environment variables (each one is in the README's table)."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from flask.sansio.scaffold import find_package
from limits import parse_many

from api.mail import MailConfigError, parse_smtp_url
from models.outcomes import RuleSet
from models.passwords import Argon2Params
from models.reminders import ReminderPolicy

MIN_KEY_BYTES = 32
# A key drawn at random has many distinct bytes (32 random bytes about 30; 64 hex digits all
# 16; even 32 hex digits fall under 10 once in 10,000 draws); fewer means a pattern or a
# word repeated, guessable whatever its length. Production refuses such keys.
MIN_DISTINCT_KEY_BYTES = 10
# RFC 9106's second recommended option (t=3, 64 MiB) is the floor production accepts. The
# attacker's cost per guess is memory x passes; parallelism splits the work into lanes, so
# a lower one costs the defender latency, not the attacker, and is left free.
MIN_ARGON2_TIME_COST = 3
MIN_ARGON2_MEMORY_KIB = 64 * 1024
# A refresh token longer-lived than this outlives any reason to keep a session without a
# password; a stolen phone's session should not last a season.
MAX_REFRESH_TOKEN_MINUTES = 90 * 24 * 60
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
    """Abuse limits in the `limits` notation ("10/minute;50/hour") and where they are counted."""

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


# Seconds between tries of a failed delivery (each with +-20 % jitter): 12 tries over about
# 40 hours (32 at the least), so an endpoint down for a day still receives everything.
DEFAULT_RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200, 43200)


@dataclass(frozen=True)
class DeliverySettings:
    """How events leave the service: webhooks, email, escalation, reminders, workers."""

    # Where links in emails and webhook payloads point (the API's public address).
    public_url: str = "http://127.0.0.1:8000"
    escalation_after: timedelta = timedelta(minutes=30)
    escalation_emails: tuple[str, ...] = ()
    reminders: ReminderPolicy = field(default_factory=ReminderPolicy)
    webhook_timeout_seconds: float = 5.0
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    disable_after: timedelta = timedelta(hours=24)
    # A claimed delivery is another worker's to try once this runs out (a crashed worker).
    lease: timedelta = timedelta(seconds=60)
    worker_threads: int = 4
    poll_seconds: float = 1.0
    # Webhook URLs on loopback or private networks (refused in production by default).
    allow_private_networks: bool = True


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
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
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
        # Several workers may start at once: each writes its own candidate aside and
        # links it into place, which fails if another got there first, so all of them
        # read the one key that won and nobody reads a half-written file.
        candidate = instance_path / f".{name}.{secrets.token_hex(8)}.tmp"
        candidate.write_text(secrets.token_urlsafe(48))
        candidate.chmod(0o600)
        try:
            os.link(candidate, key_file)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
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
    """The clinical rules: the defaults, then MOODTRACK_RULES (JSON, or @file.json), then the
    two single-threshold variables kept from before."""
    given: dict[str, Any] = {}
    raw = env.get("MOODTRACK_RULES", "").strip()
    if raw:
        try:
            text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
            given = json.loads(text)
        except (OSError, ValueError):
            raise ConfigError(
                "MOODTRACK_RULES must be a JSON object or @path/to/rules.json"
            ) from None
        if not isinstance(given, dict):
            raise ConfigError("MOODTRACK_RULES must be a JSON object")
    for name, key in (
        ("MOODTRACK_WORSENING_POINTS", "worsening_points"),
        ("MOODTRACK_POST_SESSION_DROP_POINTS", "post_session_drop_points"),
    ):
        value = env.get(name)
        if not value:
            continue
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1")
        given[key] = int(value)
    try:
        return RuleSet.from_mapping(given)
    except ValueError as exc:
        raise ConfigError(f"MOODTRACK_RULES: {exc}") from None


def _rate_limits(env: dict[str, str]) -> RateLimits:
    """The abuse limits, each parsed at start rather than per request."""
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


def _clock(name: str, value: str) -> time:
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"{name} must be a time of day such as 22:00") from None


def _number(env: dict[str, str], name: str, default: float, *, least: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if number < least:
        raise ConfigError(f"{name} must be at least {least:g}")
    return number


def _delivery(env: dict[str, str], production: bool) -> DeliverySettings:
    """Delivery settings; production refuses a retry schedule shorter than a day."""
    quiet = env.get("MOODTRACK_QUIET_HOURS", "22:00-08:00")
    start, sep, end = quiet.partition("-")
    if not sep:
        raise ConfigError("MOODTRACK_QUIET_HOURS must look like 22:00-08:00")
    schedule_raw = env.get("MOODTRACK_DELIVERY_RETRY_SECONDS", "").strip()
    try:
        schedule = (
            tuple(float(x) for x in schedule_raw.split(",")) if schedule_raw else None
        ) or DEFAULT_RETRY_SCHEDULE
    except ValueError:
        raise ConfigError(
            "MOODTRACK_DELIVERY_RETRY_SECONDS must be seconds, comma-separated"
        ) from None
    if any(wait <= 0 for wait in schedule):
        raise ConfigError("MOODTRACK_DELIVERY_RETRY_SECONDS must be positive seconds")
    # Jitter may shorten each wait to 80 %: the schedule must still cover a day then.
    if production and 0.8 * sum(schedule) < 24 * 3600:
        raise ConfigError(
            "MOODTRACK_DELIVERY_RETRY_SECONDS must add up to at least 30 hours (24 after jitter)"
        )
    timeout = _number(env, "MOODTRACK_WEBHOOK_TIMEOUT_SECONDS", 5.0, least=0.1)
    lease = _number(env, "MOODTRACK_DELIVERY_LEASE_SECONDS", 60.0, least=1)
    if lease <= 2 * timeout:
        raise ConfigError(
            "MOODTRACK_DELIVERY_LEASE_SECONDS must exceed twice MOODTRACK_WEBHOOK_TIMEOUT_SECONDS"
        )
    private = env.get("MOODTRACK_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "").strip()
    reminders = ReminderPolicy(
        quiet_start=_clock("MOODTRACK_QUIET_HOURS", start),
        quiet_end=_clock("MOODTRACK_QUIET_HOURS", end),
        daily_mood_at=_clock(
            "MOODTRACK_DAILY_REMINDER_AT", env.get("MOODTRACK_DAILY_REMINDER_AT", "19:00")
        ),
    )
    if reminders.is_quiet(reminders.daily_mood_at):
        raise ConfigError("MOODTRACK_DAILY_REMINDER_AT falls inside MOODTRACK_QUIET_HOURS")
    return DeliverySettings(
        public_url=env.get("MOODTRACK_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        escalation_after=timedelta(
            minutes=_number(env, "MOODTRACK_ESCALATION_MINUTES", 30, least=1)
        ),
        escalation_emails=tuple(
            a.strip() for a in env.get("MOODTRACK_ESCALATION_EMAILS", "").split(",") if a.strip()
        ),
        reminders=reminders,
        webhook_timeout_seconds=timeout,
        retry_schedule=schedule,
        disable_after=timedelta(
            hours=_number(env, "MOODTRACK_WEBHOOK_DISABLE_AFTER_HOURS", 24, least=1)
        ),
        lease=timedelta(seconds=lease),
        worker_threads=int(_number(env, "MOODTRACK_WORKER_THREADS", 4, least=1)),
        poll_seconds=_number(env, "MOODTRACK_WORKER_POLL_SECONDS", 1.0, least=0.05),
        allow_private_networks=(private == "1") if private else not production,
    )


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


def _override(env: dict[str, str], name: str) -> bool:
    """An explicit MOODTRACK_ALLOW_UNSAFE_* override: only the value 1 counts."""
    return env.get(name, "").strip() == "1"


def _weak_keys(keys: dict[str, bytes]) -> list[str]:
    return [kid for kid, key in keys.items() if len(set(key)) < MIN_DISTINCT_KEY_BYTES]


def _refuse_unsafe_production(settings: Settings, env: dict[str, str]) -> None:
    """Production refuses settings that defeat its own protections; ConfigError names each."""
    problems = []
    if settings.rate_limits.storage_url.startswith("memory://") and not _override(
        env, "MOODTRACK_ALLOW_UNSAFE_MEMORY_LIMITS"
    ):
        problems.append(
            "MOODTRACK_RATELIMIT_STORAGE_URL is memory://, which counts limits per worker "
            "process (N workers allow N times each limit): use a redis:// URL every worker "
            "shares, or set MOODTRACK_ALLOW_UNSAFE_MEMORY_LIMITS=1 if one process serves"
        )
    argon2 = settings.argon2
    if (
        argon2.time_cost < MIN_ARGON2_TIME_COST or argon2.memory_kib < MIN_ARGON2_MEMORY_KIB
    ) and not _override(env, "MOODTRACK_ALLOW_UNSAFE_ARGON2"):
        problems.append(
            f"MOODTRACK_ARGON2_TIME_COST {argon2.time_cost} and _MEMORY_KIB "
            f"{argon2.memory_kib} are below RFC 9106's second recommended option "
            f"({MIN_ARGON2_TIME_COST} passes, {MIN_ARGON2_MEMORY_KIB} KiB); raise them "
            "(MOODTRACK_ALLOW_UNSAFE_ARGON2=1 only for a benchmark rig without real accounts)"
        )
    if any("*" in origin or origin == "null" for origin in settings.cors_origins):
        problems.append(
            "MOODTRACK_CORS_ORIGINS must list the browser origins by name "
            "(https://app.example.org), not * or null"
        )
    for kid in _weak_keys(settings.signing_keys):
        problems.append(
            f"signing key {kid!r} has fewer than {MIN_DISTINCT_KEY_BYTES} distinct bytes, "
            "so it is not random: generate one, e.g. base64:$(openssl rand -base64 48)"
        )
    if problems:
        raise ConfigError("production refuses to start: " + "; ".join(problems))


def default_instance_path() -> Path:
    """Where development keeps its database, key and outbox when nothing says otherwise:
    Flask's own choice, never the working directory (a `moodtrack users create` run from
    elsewhere must find the server's database): `instance/` of a source checkout
    (`pip install -e .`), `<prefix>/var/moodtrack-instance` for an installed package."""
    prefix, package_path = find_package("api")
    if prefix is None:
        return Path(package_path) / "instance"
    return Path(prefix) / "var" / "moodtrack-instance"


def _token_lifetimes(env: dict[str, str]) -> tuple[timedelta, timedelta]:
    """Access and refresh token lifetimes, within their caps."""
    access_ttl = _minutes(env, "MOODTRACK_ACCESS_TOKEN_MINUTES", timedelta(minutes=15))
    if access_ttl > timedelta(minutes=15):
        raise ConfigError("MOODTRACK_ACCESS_TOKEN_MINUTES may be at most 15")
    refresh_ttl = _minutes(env, "MOODTRACK_REFRESH_TOKEN_MINUTES", timedelta(days=30))
    if refresh_ttl > timedelta(minutes=MAX_REFRESH_TOKEN_MINUTES):
        raise ConfigError(
            f"MOODTRACK_REFRESH_TOKEN_MINUTES may be at most {MAX_REFRESH_TOKEN_MINUTES} (90 days)"
        )
    return access_ttl, refresh_ttl


def _log_level(env: dict[str, str]) -> str:
    log_level = env.get("MOODTRACK_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(log_level), int):
        raise ConfigError("MOODTRACK_LOG_LEVEL must be a logging level name")
    return log_level


def _argon2(env: dict[str, str]) -> Argon2Params:
    try:
        argon2 = Argon2Params(
            time_cost=int(env.get("MOODTRACK_ARGON2_TIME_COST", 3)),
            memory_kib=int(env.get("MOODTRACK_ARGON2_MEMORY_KIB", 65536)),
            parallelism=int(env.get("MOODTRACK_ARGON2_PARALLELISM", 4)),
        )
    except ValueError:
        raise ConfigError("MOODTRACK_ARGON2_* must be whole numbers") from None
    if min(argon2.time_cost, argon2.memory_kib, argon2.parallelism) < 1:
        raise ConfigError("MOODTRACK_ARGON2_* must be at least 1")
    return argon2


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; refuse an unsafe production setup."""
    env = dict(os.environ if env is None else env)
    mode = env.get("MOODTRACK_ENV", "development")
    if mode not in {"development", "production"}:
        raise ConfigError("MOODTRACK_ENV must be 'development' or 'production'")
    given = env.get("MOODTRACK_INSTANCE_PATH")
    instance_path = Path(given).resolve() if given else default_instance_path()
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
    access_ttl, refresh_ttl = _token_lifetimes(env)
    totp_keys, active_totp_kid = _totp_keys(env, mode, instance_path)
    log_level = _log_level(env)
    argon2 = _argon2(env)
    settings = Settings(
        env=mode,
        database_url=database_url,
        signing_keys=keys,
        active_kid=active_kid,
        issuer=env.get("MOODTRACK_ISSUER", "moodtrack"),
        audience=env.get("MOODTRACK_AUDIENCE", "moodtrack-api"),
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
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
        delivery=_delivery(env, production=mode == "production"),
        require_staff_2fa=_flag(env, "MOODTRACK_REQUIRE_STAFF_2FA", mode == "production"),
        emergency_access_duration=_emergency_duration(env),
        smtp_url=_smtp_url(env, mode),
        mail_from=env.get("MOODTRACK_MAIL_FROM", "").strip() or DEFAULT_MAIL_FROM,
        totp_keys=totp_keys,
        active_totp_kid=active_totp_kid,
    )
    if mode == "production":
        _refuse_unsafe_production(settings, env)
    return settings
