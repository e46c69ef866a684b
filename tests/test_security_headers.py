"""Security headers on every response: a strict Content-Security-Policy for the API, one
that lets /docs run its bundled Swagger UI and nothing else, no framing, no referrer, and
Strict-Transport-Security behind TLS (always in production)."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from api import create_app
from api.headers import API_POLICY, HSTS
from tests.conftest import auth, register_patient

STRICT = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_POLICY,
}


def _has(response: Any, expected: dict[str, str]) -> None:
    # Each exactly once (the hooks add them rather than set them), request id included.
    for name, value in expected.items():
        assert response.headers.getlist(name) == [value], (response.request.path, name)
    assert len(response.headers.getlist("X-Request-ID")) == 1, response.request.path


def test_api_responses_and_errors_carry_the_strict_headers(client):
    headers = auth(client, register_patient(client)["email"])
    assert API_POLICY.startswith("default-src 'none'") and "frame-ancestors 'none'" in API_POLICY
    responses = [
        client.get("/api/v1/me", headers=headers),
        client.get("/api/v1/patients/me/chart.svg", headers=headers),
        client.get("/api/v1/patients/me/report?format=csv", headers=headers, buffered=True),
        client.get("/api/v1/me"),  # 401
        client.get("/api/v1/nope"),  # 404
        client.post("/api/v1/auth/login", data="[[[", content_type="application/json"),  # 400
        client.get("/healthz"),
        client.get("/openapi.yaml"),
    ]
    for response in responses:
        _has(response, STRICT)
        # Plain HTTP in development: no HSTS (a browser would ignore it anyway).
        assert "Strict-Transport-Security" not in response.headers


def _inline_scripts(page: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", page, flags=re.S)


def test_docs_run_only_their_own_scripts(app, client):
    response = client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    (script,) = _inline_scripts(response.get_data(as_text=True))
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert directives == {
        "default-src": "'none'",
        "script-src": f"'self' 'sha256-{digest}'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert "unsafe" not in policy and "*" not in policy
    _has(response, {k: v for k, v in STRICT.items() if k != "Content-Security-Policy"})
    # The scripts and styles it loads are this origin's (static files, not operations of
    # the contract), and allowed by 'self'.
    static = FlaskClient(app)
    for src in re.findall(r'(?:src|href)="([^"]+)"', response.get_data(as_text=True)):
        assert src.startswith("/"), src
        loaded = static.get(src)
        assert loaded.status_code == 200
        loaded.close()


def test_hsts_behind_tls_in_development(app, client, settings):
    assert (
        client.get("/healthz", base_url="https://localhost").headers["Strict-Transport-Security"]
        == HSTS
    )
    # Behind a trusted proxy, X-Forwarded-Proto says the client used TLS.
    behind = create_app(settings.with_overrides(trusted_proxies=1))
    try:
        proxied = behind.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert proxied.headers["Strict-Transport-Security"] == HSTS
        plain = behind.test_client().get("/healthz", headers={"X-Forwarded-Proto": "http"})
        assert "Strict-Transport-Security" not in plain.headers
    finally:
        behind.extensions["moodtrack"].engine.dispose()
    # Without trusted proxies the header is the client's word, and is not taken.
    forged = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in forged.headers


def test_hsts_always_in_production(settings):
    production = create_app(settings.with_overrides(env="production"))
    try:
        for path in ("/healthz", "/api/v1/me", "/docs"):
            response = production.test_client().get(path)
            assert response.headers["Strict-Transport-Security"] == HSTS, path
    finally:
        production.extensions["moodtrack"].engine.dispose()


# --- a real browser under the policy ------------------------------------------------------


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app on 127.0.0.1 (a free port), plus /docs-strict: /docs under the API's policy,
    to prove that the browser reports what a policy blocks."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        strict = environ.get("PATH_INFO") == "/docs-strict"
        if strict:
            environ["PATH_INFO"] = "/docs"

        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if strict:
                headers = [h for h in headers if h[0] != "Content-Security-Policy"]
                headers.append(("Content-Security-Policy", API_POLICY))
            return start_response(status, headers, *rest)

        return app(environ, start)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _chromium(url: str) -> tuple[str, list[str]]:
    """The DOM after the page ran, and the console lines about a Content-Security-Policy."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("Chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={Path(profile)}",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    blocked = [line for line in done.stderr.splitlines() if "Content Security Policy" in line]
    return done.stdout, blocked


@pytest.mark.services
def test_swagger_ui_works_under_its_policy_in_chromium(served):
    # The control: under the API's policy nothing runs, and the browser says why.
    dom, blocked = _chromium(f"{served}/docs-strict")
    assert 'class="opblock ' not in dom and blocked
    # The deep link opens one operation, so its examples are rendered too.
    dom, blocked = _chromium(f"{served}/docs#/sessions/createObservation")
    assert blocked == []
    assert dom.count('class="opblock ') >= 50  # every operation of the contract
    assert "createObservation" in dom or "Record readings during a session" in dom
