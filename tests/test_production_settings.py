"""Production refuses, at start, settings that defeat its own protections: per-process rate
limits, cheap password hashing, a wildcard CORS origin, a signing key that is not random,
refresh tokens that live for seasons. The documented deployment still starts."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api import create_app
from api.config import MAX_REFRESH_TOKEN_MINUTES, ConfigError, load_settings
from tests.conftest import ROOT


def _random_key() -> str:
    return "base64:" + base64.b64encode(secrets.token_bytes(48)).decode()


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    """A production environment that starts: everything below changes one thing."""
    return {
        "MOODTRACK_ENV": "production",
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": "postgresql://moodtrack@db:5432/moodtrack",
        "MOODTRACK_SIGNING_KEYS": f"k1={_random_key()}",
        "MOODTRACK_TOTP_KEYS": f"t1={_random_key()}",
        "MOODTRACK_SMTP_URL": "smtp+starttls://moodtrack:secret@mail.example.org:587",
        "MOODTRACK_RATELIMIT_STORAGE_URL": "redis://redis:6379/0",
    }


def test_the_baseline_starts(production):
    settings = load_settings(production)
    assert settings.env == "production"
    assert settings.argon2.time_cost == 3 and settings.argon2.memory_kib == 65536


def test_memory_rate_limits_are_refused_unless_one_process_is_declared(production):
    memory = {**production, "MOODTRACK_RATELIMIT_STORAGE_URL": "memory://"}
    with pytest.raises(ConfigError, match=r"memory://.*per worker"):
        load_settings(memory)
    unset = {k: v for k, v in production.items() if k != "MOODTRACK_RATELIMIT_STORAGE_URL"}
    with pytest.raises(ConfigError, match="MOODTRACK_RATELIMIT_STORAGE_URL"):
        load_settings(unset)  # memory:// is the default
    allowed = load_settings({**memory, "MOODTRACK_ALLOW_UNSAFE_MEMORY_LIMITS": "1"})
    assert allowed.rate_limits.storage_url == "memory://"


@pytest.mark.parametrize(
    ("time_cost", "memory_kib", "parallelism", "refused"),
    [
        ("2", "65536", "4", True),
        ("3", "65535", "4", True),
        ("1", "1024", "1", True),
        ("3", "65536", "1", False),  # fewer lanes cost the defender latency, not the attacker
        ("4", "131072", "8", False),
    ],
)
def test_argon2_below_rfc_9106_is_refused(production, time_cost, memory_kib, parallelism, refused):
    env = {
        **production,
        "MOODTRACK_ARGON2_TIME_COST": time_cost,
        "MOODTRACK_ARGON2_MEMORY_KIB": memory_kib,
        "MOODTRACK_ARGON2_PARALLELISM": parallelism,
    }
    if refused:
        with pytest.raises(ConfigError, match="RFC 9106"):
            load_settings(env)
        # A benchmark rig says so explicitly.
        assert load_settings({**env, "MOODTRACK_ALLOW_UNSAFE_ARGON2": "1"}).argon2.time_cost == int(
            time_cost
        )
    else:
        assert load_settings(env).argon2.memory_kib == int(memory_kib)


@pytest.mark.parametrize(
    "origins", ["*", "https://app.example.org,*", "https://*.example.org", "null"]
)
def test_wildcard_cors_origins_are_refused(production, origins):
    with pytest.raises(ConfigError, match="MOODTRACK_CORS_ORIGINS"):
        load_settings({**production, "MOODTRACK_CORS_ORIGINS": origins})


def test_named_cors_origins_start(production):
    env = {**production, "MOODTRACK_CORS_ORIGINS": "https://app.example.org, https://x.example"}
    assert load_settings(env).cors_origins == ("https://app.example.org", "https://x.example")


@pytest.mark.parametrize(
    "secret",
    [
        "s" * 32,  # 32 identical bytes
        "ab" * 24,
        "passwordpasswordpasswordpassword",
        "base64:" + base64.b64encode(bytes(48)).decode(),  # 48 zero bytes
    ],
)
def test_signing_keys_that_are_not_random_are_refused(production, secret):
    with pytest.raises(ConfigError, match="'weak' has fewer than 10 distinct bytes"):
        load_settings({**production, "MOODTRACK_SIGNING_KEYS": f"weak={secret}"})
    # One weak key in a ring is enough to refuse: any kid in the ring verifies tokens.
    ring = f"good={_random_key()},weak={secret}"
    with pytest.raises(ConfigError, match="'weak'"):
        load_settings({**production, "MOODTRACK_SIGNING_KEYS": ring})


@pytest.mark.parametrize("secret", [secrets.token_hex(32), secrets.token_urlsafe(32)])
def test_random_keys_in_any_spelling_start(production, secret):
    assert load_settings({**production, "MOODTRACK_SIGNING_KEYS": f"k={secret}"}).active_kid == "k"


def test_refresh_tokens_live_at_most_90_days(production):
    at_most = str(MAX_REFRESH_TOKEN_MINUTES)
    assert load_settings({**production, "MOODTRACK_REFRESH_TOKEN_MINUTES": at_most}).refresh_ttl
    ten_years = str(10 * 365 * 24 * 60)
    for env in (production, {"MOODTRACK_INSTANCE_PATH": production["MOODTRACK_INSTANCE_PATH"]}):
        with pytest.raises(ConfigError, match=r"MOODTRACK_REFRESH_TOKEN_MINUTES.*90 days"):
            load_settings({**env, "MOODTRACK_REFRESH_TOKEN_MINUTES": ten_years})


def test_every_problem_is_named_at_once(production):
    env = {
        **production,
        "MOODTRACK_RATELIMIT_STORAGE_URL": "memory://",
        "MOODTRACK_CORS_ORIGINS": "*",
        "MOODTRACK_SIGNING_KEYS": "k=" + "s" * 32,
        "MOODTRACK_ARGON2_TIME_COST": "1",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    message = str(refused.value)
    for name in ("memory://", "MOODTRACK_ARGON2", "MOODTRACK_CORS_ORIGINS", "signing key 'k'"):
        assert name in message


def test_development_keeps_its_conveniences(tmp_path):
    env = {
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "MOODTRACK_SIGNING_KEYS": "k=" + "s" * 32,
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "1024",
        "MOODTRACK_CORS_ORIGINS": "*",
    }
    assert load_settings(env).env == "development"


def test_the_app_and_the_cli_refuse_to_start(production, monkeypatch):
    unsafe = {**production, "MOODTRACK_RATELIMIT_STORAGE_URL": "memory://"}
    for name in list(os.environ):
        if name.startswith("MOODTRACK_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in unsafe.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="memory://"):
        create_app()  # what gunicorn 'api:create_app()' calls in each worker
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "upgrade"],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: production refuses to start")


def _docker_run_environment() -> dict[str, str]:
    """The environment the README's production lines give the image (the env file that
    `docker run --env-file` reads), on top of the image's own ENV."""
    readme = (ROOT / "README.md").read_text("utf-8")
    start = readme.index("cat > moodtrack.env <<EOF\n") + len("cat > moodtrack.env <<EOF\n")
    block = readme[start : readme.index("\nEOF\n", start)]
    # The two command substitutions, done as the shell would (no openssl needed here).
    block = block.replace("$(date +%Y%m)", datetime.now(UTC).strftime("%Y%m"))
    block = block.replace(
        "$(openssl rand -base64 48)", base64.b64encode(secrets.token_bytes(48)).decode()
    )
    assert "$(" not in block, "a substitution this test does not know"
    pairs = [line.split("=", 1) for line in block.splitlines() if line.strip()]
    assert pairs and "--env-file moodtrack.env" in readme, "no env file in the README"
    image = dict(re.findall(r"(\w+)=(\S+)", _dockerfile_env()))
    assert image["MOODTRACK_ENV"] == "production"
    return {**image, **dict(pairs)}


def _dockerfile_env() -> str:
    text = (ROOT / "Dockerfile").read_text("utf-8")
    start = text.index("\nENV ", text.index("FROM python:3.11-slim\n"))
    return text[start : text.index("\nCOPY", start)].replace("\\\n", " ")


def test_the_documented_docker_run_line_starts(tmp_path):
    env = {**_docker_run_environment(), "MOODTRACK_INSTANCE_PATH": str(tmp_path)}
    settings = load_settings(env)
    assert settings.env == "production"
    assert settings.rate_limits.storage_url.startswith("redis://")


def test_the_benchmark_rigs_start_in_production_mode(tmp_path):
    from bench.faults import server_env as faults_env
    from bench.throughput import server_env as throughput_env

    url = "postgresql://postgres@127.0.0.1:5432/bench"
    smtp = "smtp://127.0.0.1:25"
    for env in (
        faults_env(url, tmp_path, "t", 1, smtp_url=smtp),
        throughput_env(url, tmp_path, "t", 1, smtp_url=smtp),
    ):
        settings = load_settings(env)
        assert settings.env == "production" and settings.argon2.time_cost == 1
