"""Configuration rules, migrations matching the models, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from api.config import ConfigError, load_settings
from models import Base

# Random-looking (production refuses keys of few distinct bytes), fixed for the tests.
GOOD_KEY = "k=" + "0123456789abcdefghijklmnopqrstuv"


def test_production_refuses_to_start_without_key_or_database(tmp_path):
    base = {
        "MOODTRACK_ENV": "production",
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "MOODTRACK_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/0",
        "MOODTRACK_TOTP_KEYS": "t1=0123456789abcdefghijklmnopqrstuv",
        "MOODTRACK_SMTP_URL": "smtp+starttls://mailer:secret@mail.example.org:587",
    }
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({**base, "MOODTRACK_SIGNING_KEYS": GOOD_KEY})
    with pytest.raises(ConfigError, match="MOODTRACK_SIGNING_KEYS"):
        load_settings({**base, "DATABASE_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="32 bytes"):
        load_settings(
            {**base, "DATABASE_URL": "sqlite:///x.db", "MOODTRACK_SIGNING_KEYS": "k=short"}
        )
    settings = load_settings(
        {**base, "DATABASE_URL": "sqlite:///x.db", "MOODTRACK_SIGNING_KEYS": GOOD_KEY}
    )
    assert settings.active_kid == "k" and settings.env == "production"
    assert not (tmp_path / "signing.key").exists()
    # TOTP seeds are encrypted with a ring of their own, which production must be given.
    assert settings.active_totp_kid == "t1" and settings.require_staff_2fa is True
    full = {**base, "DATABASE_URL": "sqlite:///x.db", "MOODTRACK_SIGNING_KEYS": GOOD_KEY}
    with pytest.raises(ConfigError, match="MOODTRACK_TOTP_KEYS"):
        load_settings({k: v for k, v in full.items() if k != "MOODTRACK_TOTP_KEYS"})
    relaxed = load_settings({**full, "MOODTRACK_REQUIRE_STAFF_2FA": "false"})
    assert relaxed.require_staff_2fa is False
    # Sign-up sends a code by email: production needs a relay.
    with pytest.raises(ConfigError, match="MOODTRACK_SMTP_URL"):
        load_settings({k: v for k, v in full.items() if k != "MOODTRACK_SMTP_URL"})


def test_staff_2fa_is_not_required_in_development_unless_asked(tmp_path):
    env = {"MOODTRACK_INSTANCE_PATH": str(tmp_path)}
    assert load_settings(env).require_staff_2fa is False
    assert load_settings({**env, "MOODTRACK_REQUIRE_STAFF_2FA": "1"}).require_staff_2fa is True
    assert (tmp_path / "totp.key").stat().st_mode & 0o077 == 0


def test_development_generates_a_key_once_under_instance(tmp_path):
    env = {"MOODTRACK_INSTANCE_PATH": str(tmp_path)}
    first = load_settings(env)
    second = load_settings(env)
    assert first.signing_keys == second.signing_keys
    assert len(first.signing_keys["dev"]) >= 32
    assert (tmp_path / "signing.key").stat().st_mode & 0o077 == 0
    assert first.database_url == f"sqlite:///{tmp_path / 'moodtrack.db'}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MOODTRACK_ACCESS_TOKEN_MINUTES", "16"),
        ("MOODTRACK_ACCESS_TOKEN_MINUTES", "abc"),
        ("MOODTRACK_ACTIVE_KID", "missing"),
        ("MOODTRACK_ENV", "staging"),
        ("MOODTRACK_LOG_LEVEL", "LOUD"),
        ("MOODTRACK_SIGNING_KEYS", "no-equals-sign"),
        ("MOODTRACK_REQUIRE_STAFF_2FA", "maybe"),
        ("MOODTRACK_TOTP_KEYS", "t=short"),
        ("MOODTRACK_ACTIVE_TOTP_KID", "missing"),
        ("MOODTRACK_SMTP_URL", "http://mail.example.org"),
        ("MOODTRACK_SMTP_URL", "smtp://mail.example.org:notaport"),
        ("MOODTRACK_EMERGENCY_ACCESS_MINUTES", "2000"),
    ],
)
def test_bad_settings_are_refused(tmp_path, name, value):
    env = {
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "MOODTRACK_SIGNING_KEYS": GOOD_KEY,
        name: value,
    }
    with pytest.raises(ConfigError):
        load_settings(env)


def test_key_ring_and_base64_keys(tmp_path):
    import base64

    raw = bytes(range(32))
    settings = load_settings(
        {
            "MOODTRACK_INSTANCE_PATH": str(tmp_path),
            "MOODTRACK_SIGNING_KEYS": f"new=base64:{base64.b64encode(raw).decode()},old={'o' * 32}",
            "MOODTRACK_ACTIVE_KID": "new",
        }
    )
    assert settings.signing_keys["new"] == raw and set(settings.signing_keys) == {"new", "old"}


def test_migrated_schema_matches_the_models(app):
    engine = app.extensions["moodtrack"].engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
        assert differences == []
        tables = set(inspect(connection).get_table_names())
    assert set(Base.metadata.tables) <= tables


def _cli(*args, env, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_upgrade_and_create_user(tmp_path):
    import os

    env = {
        **os.environ,
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "1024",
        "MOODTRACK_ARGON2_PARALLELISM": "1",
    }
    assert _cli("db", "upgrade", env=env).returncode == 0
    created = _cli(
        "users",
        "create",
        "--email",
        "doc@example.org",
        "--role",
        "clinician",
        "--password-stdin",
        env=env,
        stdin="a long clinic passphrase\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created clinician ")
    duplicate = _cli(
        "users",
        "create",
        "--email",
        "DOC@example.org",
        "--role",
        "admin",
        "--password-stdin",
        env=env,
        stdin="a long clinic passphrase\n",
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    weak = _cli(
        "users",
        "create",
        "--email",
        "x@example.org",
        "--role",
        "admin",
        "--password-stdin",
        env=env,
        stdin="password\n",
    )
    assert weak.returncode == 1 and "password" in weak.stderr
    no_stdin = _cli("users", "create", "--email", "y@example.org", "--role", "admin", env=env)
    assert no_stdin.returncode == 2


def test_cli_refuses_bad_production_config(tmp_path):
    import os

    env = {**os.environ, "MOODTRACK_ENV": "production", "MOODTRACK_INSTANCE_PATH": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    result = _cli("db", "upgrade", env=env)
    assert result.returncode == 2 and "DATABASE_URL" in result.stderr


def test_the_instance_folder_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    # `moodtrack users create` run from another directory must find the server's database.
    env = {
        "MOODTRACK_SIGNING_KEYS": GOOD_KEY,
        "MOODTRACK_TOTP_KEYS": "t1=0123456789abcdefghijklmnopqrstuv",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    here = load_settings(env).instance_path
    monkeypatch.chdir(tmp_path)
    assert load_settings(env).instance_path == here
    assert here != tmp_path / "instance"
