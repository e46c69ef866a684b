"""Abuse limits: per address, per account, per clinician and per user; 429 problem+json with
Retry-After; configuration; and one limit shared by several gunicorn workers through Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from api import create_app
from api.config import (
    RATE_LIMIT_VARIABLES,
    ConfigError,
    RateLimits,
    Settings,
    load_settings,
)
from tests.conftest import (
    PASSWORD,
    ContractClient,
    auth,
    make_staff,
    register_patient,
    unique_email,
)
from tests.mailsink import CODE

# The checkout: its README, and the working directory of the gunicorn under test.
REPO = Path(__file__).resolve().parent.parent
LOW = RateLimits(
    login_per_address="5/hour",
    login_per_account="2/hour",
    register_per_address="2/hour",
    invites_per_clinician="2/hour",
    writes_per_user="3/hour",
    password_checks_per_user="2/hour",
)


def _app(settings: Settings, **changes) -> Flask:
    application = create_app(settings.with_overrides(**changes))
    application.test_client_class = ContractClient
    return application


@pytest.fixture(scope="module")
def low_app(settings: Settings) -> Iterator[Flask]:
    """One app with low limits for the module; counters are reset before each test."""
    application = _app(settings, rate_limits=LOW)
    yield application
    application.extensions["moodtrack"].engine.dispose()


@pytest.fixture
def limited(app: Flask, low_app: Flask) -> Iterator[Flask]:
    """The low-limit app, writing inside this test's rolled-back transaction."""
    services = low_app.extensions["moodtrack"]
    original = services.session_factory
    # conftest's autouse fixture already pointed the main app at the test's transaction.
    services.session_factory = app.extensions["moodtrack"].session_factory
    services.limiter.reset()
    yield low_app
    services.session_factory = original


def _assert_429(response) -> int:
    assert response.status_code == 429, (response.status_code, response.get_json())
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "urn:moodtrack:problem:too-many-requests"
    assert body["status"] == 429
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 3600
    assert response.headers["X-Request-ID"]
    return wait


def _login(client, email, password=PASSWORD, address="192.0.2.1"):
    return client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_login_per_account_counts_every_spelling_of_the_email_from_one_address(client, limited):
    patient = register_patient(client)
    lc = limited.test_client()
    assert _login(lc, patient["email"]).status_code == 200
    assert _login(lc, patient["email"].upper()).status_code == 200
    _assert_429(_login(lc, f"  {patient['email']} "))
    # The owner elsewhere is not kept out by what one address did, nor is another account.
    assert _login(lc, patient["email"], address="192.0.2.2").status_code == 200
    other = register_patient(client)
    assert _login(lc, other["email"]).status_code == 200


def test_login_per_address(client, limited):
    lc = limited.test_client()
    for _ in range(5):
        assert _login(lc, unique_email(), "wrong password").status_code == 401
    response = _login(lc, unique_email(), "wrong password")
    _assert_429(response)
    assert "wrong password" not in response.get_data(as_text=True)
    assert _login(lc, unique_email(), "wrong password", address="192.0.2.99").status_code == 401


def test_register_per_address(limited):
    lc = limited.test_client()

    def register(address: str):
        return lc.post(
            "/api/v1/auth/register",
            json={
                "email": unique_email(),
                "password": PASSWORD,
                "display_name": "Pat",
                "timezone": "UTC",
            },
            environ_base={"REMOTE_ADDR": address},
        )

    assert register("198.51.100.1").status_code == 202
    assert register("198.51.100.1").status_code == 202
    _assert_429(register("198.51.100.1"))
    assert register("198.51.100.2").status_code == 202


def test_invites_per_clinician(app, client, limited):
    lc = limited.test_client()
    first, second = (auth(client, make_staff(app)["email"]) for _ in range(2))
    for _ in range(2):
        assert lc.post("/api/v1/invites", headers=first).status_code == 201
    _assert_429(lc.post("/api/v1/invites", headers=first))
    assert lc.post("/api/v1/invites", headers=second).status_code == 201


def test_writes_per_user_and_reads_are_free(client, limited):
    lc = limited.test_client()
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    url = "/api/v1/patients/me/mood-entries"
    body = {"occurred_at": "2026-11-26T10:00:00+00:00", "mood": 5}
    for _ in range(3):
        assert lc.post(url, json=body, headers=headers).status_code in (200, 201)
    for _ in range(5):
        assert lc.get(url, headers=headers).status_code == 200
    _assert_429(lc.post(url, json=body, headers=headers))
    # The limit is the user's, not the address's: another patient may still write.
    other = auth(client, register_patient(client)["email"])
    assert lc.post(url, json=body, headers=other).status_code == 201


def test_password_checks_per_user(client, limited):
    lc = limited.test_client()
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    for _ in range(2):
        wrong = lc.delete("/api/v1/me", json={"password": "guess"}, headers=headers)
        assert wrong.status_code == 422
    # Even the right password now waits: a stolen token is not a password oracle.
    _assert_429(lc.delete("/api/v1/me", json={"password": PASSWORD}, headers=headers))
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_forwarded_for_counts_only_behind_trusted_proxies(app, client, settings):
    email = register_patient(client)["email"]
    direct = _app(settings, rate_limits=LOW)
    proxied = _app(settings, rate_limits=LOW, trusted_proxies=1)
    try:
        for application in (direct, proxied):
            services = application.extensions["moodtrack"]
            services.session_factory = app.extensions["moodtrack"].session_factory
        # Without a trusted proxy a forged X-Forwarded-For changes nothing.
        dc = direct.test_client()
        for i in range(5):
            forged = {"X-Forwarded-For": f"203.0.113.{i}"}
            response = dc.post(
                "/api/v1/auth/login",
                json={"email": unique_email(), "password": "x"},
                headers=forged,
            )
            assert response.status_code == 401
        _assert_429(
            dc.post(
                "/api/v1/auth/login",
                json={"email": email, "password": PASSWORD},
                headers={"X-Forwarded-For": "203.0.113.200"},
            )
        )
        # Behind one trusted proxy, each forwarded address has its own count.
        pc = proxied.test_client()
        for i in range(7):
            response = pc.post(
                "/api/v1/auth/login",
                json={"email": unique_email(), "password": "x"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            assert response.status_code == 401
    finally:
        for application in (direct, proxied):
            application.extensions["moodtrack"].engine.dispose()


def test_an_unreachable_store_lets_requests_through(app, client, settings):
    # Fail open: a patient's entry must not be refused because Redis is down.
    broken = _app(
        settings,
        rate_limits=RateLimits(storage_url="redis://127.0.0.1:9/0", login_per_account="1/hour"),
    )
    try:
        broken.extensions["moodtrack"].session_factory = app.extensions["moodtrack"].session_factory
        email = register_patient(client)["email"]
        bc = broken.test_client()
        for _ in range(3):
            assert _login(bc, email).status_code == 200
    finally:
        broken.extensions["moodtrack"].engine.dispose()


def test_limits_come_from_the_environment_with_the_readme_defaults():
    settings = load_settings({"MOODTRACK_SIGNING_KEYS": "k=" + "x" * 40})
    readme = (REPO / "README.md").read_text("utf-8")
    for name, variable, default in RATE_LIMIT_VARIABLES:
        assert getattr(settings.rate_limits, name) == default
        assert f"`{variable}`" in readme and f"`{default}`" in readme, variable
    assert "`MOODTRACK_TRUSTED_PROXIES`" in readme
    assert settings.trusted_proxies == 0
    custom = load_settings(
        {
            "MOODTRACK_SIGNING_KEYS": "k=" + "x" * 40,
            "MOODTRACK_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/3",
            "MOODTRACK_RATELIMIT_LOGIN_PER_ACCOUNT": "3/minute;20/day",
            "MOODTRACK_TRUSTED_PROXIES": "2",
        }
    )
    assert custom.rate_limits.storage_url == "redis://127.0.0.1:6379/3"
    assert custom.rate_limits.login_per_account == "3/minute;20/day"
    assert custom.trusted_proxies == 2
    for variable, value in (
        ("MOODTRACK_RATELIMIT_WRITES_PER_USER", "lots"),
        ("MOODTRACK_RATELIMIT_STORAGE_URL", "memcached://x"),
        ("MOODTRACK_TRUSTED_PROXIES", "one"),
    ):
        with pytest.raises(ConfigError):
            load_settings({"MOODTRACK_SIGNING_KEYS": "k=" + "x" * 40, variable: value})


# --- several gunicorn workers sharing one Redis -------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"
ACCOUNT_LIMIT = 4


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        # Never skipped: the limit across workers is the point. .ci/run starts Redis.
        pytest.fail("Redis is not reachable at 127.0.0.1:6379 (start it: see the README)")
    return client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


@pytest.mark.services
def test_a_limit_holds_across_gunicorn_workers_sharing_redis(tmp_path: Path):
    redis = _redis()
    prefix = f"moodtrack-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gunicorn.db'}",
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "MOODTRACK_SIGNING_KEYS": "k=" + "s" * 40,
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "1024",
        "MOODTRACK_ARGON2_PARALLELISM": "1",
        "MOODTRACK_RATELIMIT_STORAGE_URL": REDIS_URL,
        "MOODTRACK_RATELIMIT_KEY_PREFIX": prefix,
        "MOODTRACK_RATELIMIT_LOGIN_PER_ACCOUNT": f"{ACCOUNT_LIMIT}/hour",
    }
    env.pop("TEST_DATABASE_URL", None)
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "upgrade"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "gunicorn.log"
    with log_file.open("wb") as log:
        server = subprocess.Popen(
            [
                str(bin_dir / "gunicorn"),
                "api:create_app()",
                "--workers",
                "3",
                "--bind",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "5",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log_file.read_text()
            try:
                if _call(base, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start in 30 s"
            time.sleep(0.1)
        email = unique_email("workers")
        status, _, _ = _call(
            base,
            "/api/v1/auth/register",
            {"email": email, "password": PASSWORD, "display_name": "W", "timezone": "UTC"},
        )
        assert status == 202
        # Without MOODTRACK_SMTP_URL (development) the sign-up email is a file in the outbox.
        deadline = time.monotonic() + 10
        while not list((tmp_path / "outbox").glob("*.eml")):
            assert time.monotonic() < deadline, "no sign-up email in the outbox"
            time.sleep(0.05)
        message = next((tmp_path / "outbox").glob("*.eml")).read_text()
        code = CODE.search(message.replace("=\n", "")).group(1)
        status, _, _ = _call(
            base,
            "/api/v1/auth/register/confirm",
            {"email": email, "code": code, "password": PASSWORD},
        )
        assert status == 201
        # Concurrent attempts spread over the three workers; Redis counts them once.
        attempts = ACCOUNT_LIMIT + 5
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(
                pool.map(
                    lambda _: _call(
                        base, "/api/v1/auth/login", {"email": email, "password": PASSWORD}
                    ),
                    range(attempts),
                )
            )
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * ACCOUNT_LIMIT + [429] * 5, statuses
        for status, headers, body in results:
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
                assert body["type"] == "urn:moodtrack:problem:too-many-requests"
        # A query string never reaches a log line (gunicorn's access log stays off).
        marker = uuid.uuid4().hex
        _call(base, f"/healthz?note={marker}")
        _call(base, f"/api/v1/alerts?status={marker}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        keys = list(redis.scan_iter(match=f"*{prefix}*"))
        if keys:
            redis.delete(*keys)
        redis.close()
    assert keys, "nothing was counted in Redis under this run's prefix"
    assert marker not in log_file.read_text("utf-8", "replace")
