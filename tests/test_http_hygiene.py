"""problem+json for every error, headers on every response, and what logs may hold."""

from __future__ import annotations

import json
import logging
import re

import pytest
from flask.testing import FlaskClient

from tests.conftest import PASSWORD, auth, make_staff, register_patient

PROBLEM = "application/problem+json"


def _is_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "SELECT" not in text
    return body


def test_unknown_paths_are_problem_json(client):
    _is_problem(client.get("/nope"), 404)
    _is_problem(client.get("/api/v1/nope"), 404)


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_an_empty_path_segment_is_404_not_a_redirect_or_500(client, method):
    # An app that lost a session id sends `sessions//observations`; werkzeug used to
    # redirect (GET) or fail inside flask-restx's error router (POST: 500 HTML).
    patient = register_patient(client)
    path = f"/api/v1/patients/{patient['id']}/sessions//observations"
    response = getattr(client, method)(path, headers=auth(client, patient["email"]), json={})
    _is_problem(response, 404)


def test_method_not_allowed(client):
    response = client.delete("/api/v1/auth/login")
    _is_problem(response, 405)
    assert "POST" in response.headers["Allow"]
    _is_problem(client.put("/healthz"), 405)


def test_body_over_one_mebibyte_is_413(client):
    big = json.dumps({"email": "a@b.org", "password": "x" * (1024 * 1024)})
    _is_problem(client.post("/api/v1/auth/login", data=big, content_type="application/json"), 413)


def test_wrong_content_type_is_415(client):
    _is_problem(client.post("/api/v1/auth/login", data="email=a", content_type="text/plain"), 415)
    _is_problem(client.post("/api/v1/auth/login"), 415)


@pytest.mark.parametrize("payload", ['{"email": ', "not json", b"\xff\xfe", '{"a": 1,}'])
def test_malformed_json_is_400(client, payload):
    _is_problem(
        client.post("/api/v1/auth/login", data=payload, content_type="application/json"), 400
    )


def test_non_object_json_is_422(client):
    body = _is_problem(client.post("/api/v1/auth/login", json=[1, 2]), 422)
    assert body["errors"]


def test_validation_errors_never_echo_values(client):
    secret = "SECRET-NOTE-7f3a"
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": secret,
            "password": secret,
            "display_name": secret * 20,
            "timezone": secret,
            "unexpected": secret,
        },
    )
    body = _is_problem(response, 422)
    assert set(body["errors"]) >= {"email", "display_name", "timezone", "unexpected"}
    assert secret not in response.get_data(as_text=True)


def test_security_headers_and_request_id(client):
    patient = register_patient(client)
    response = client.get(
        "/api/v1/me", headers={**auth(client, patient["email"]), "X-Request-ID": "trace-123"}
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"] == "trace-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["X-Request-ID"] != "bad id with spaces"
    assert len(generated.headers["X-Request-ID"]) == 32
    error = client.get("/api/v1/nope")
    assert error.headers["X-Content-Type-Options"] == "nosniff"
    assert error.get_json()["instance"].endswith(error.headers["X-Request-ID"])


def test_health_and_readiness(app, client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(app, client):
    from api.db import make_engine

    services = app.extensions["moodtrack"]
    original = services.engine
    services.engine = make_engine("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        response = client.get("/readyz")
    finally:
        services.engine.dispose()
        services.engine = original
    _is_problem(response, 503)


def test_unexpected_errors_are_a_bare_500_and_change_nothing(app, client, monkeypatch):
    from api.resources import accounts

    headers = auth(client, make_staff(app)["email"])

    def explode(*args, **kwargs):
        raise RuntimeError("boom with patient data: mood 2")

    monkeypatch.setattr(accounts, "user_view", explode)
    response = client.get("/api/v1/me", headers=headers)
    _is_problem(response, 500)
    assert "boom" not in response.get_data(as_text=True)


def test_logs_are_json_lines_without_bodies_queries_or_tokens(client, caplog):
    stream_lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record):
            stream_lines.append(self.format(record))

    from api.logs import JsonFormatter

    handler = Capture()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("moodtrack")
    logger.addHandler(handler)
    try:
        patient = register_patient(client)
        tokens = client.post(
            "/api/v1/auth/login", json={"email": patient["email"], "password": PASSWORD}
        ).get_json()
        client.get(
            "/api/v1/patients/me?limit=5&secret=QUERYMARK",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    finally:
        logger.removeHandler(handler)
    assert stream_lines
    joined = "\n".join(stream_lines)
    for forbidden in (
        patient["email"],
        PASSWORD,
        tokens["access_token"],
        "QUERYMARK",
        tokens["refresh_token"],
    ):
        assert forbidden not in joined
    entries = [json.loads(line) for line in stream_lines]
    request_lines = [e for e in entries if e["msg"] == "request"]
    assert {"method", "route", "status", "latency_ms", "request_id"} <= set(request_lines[-1])
    assert request_lines[-1]["route"] == "/api/v1/patients/<patient_id>"


def test_if_match_compares_strongly(client):
    """RFC 9110 §13.1.1: If-Match uses the strong comparison, so a weak tag never matches."""
    headers = auth(client, register_patient(client)["email"])
    me = client.get("/api/v1/me", headers=headers)
    etag = me.headers["ETag"]
    assert etag == '"1"'
    for weak in (f"W/{etag}", f'W/{etag}, "7"'):
        refused = client.patch(
            "/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers={**headers, "If-Match": weak}
        )
        _is_problem(refused, 412)
    entry = client.post(
        "/api/v1/patients/me/mood-entries",
        json={"occurred_at": "2026-11-27T10:00:00+01:00", "mood": 5},
        headers=headers,
    ).get_json()
    url = f"/api/v1/patients/me/mood-entries/{entry['id']}"
    _is_problem(client.delete(url, headers={**headers, "If-Match": 'W/"1"'}), 412)
    assert client.get(url, headers=headers).status_code == 200  # nothing was deleted
    # A strong tag among others, or *, still matches.
    listed = client.patch(
        "/api/v1/me",
        json={"timezone": "Asia/Tokyo"},
        headers={**headers, "If-Match": f'"7", {etag}'},
    )
    assert listed.status_code == 200
    assert client.delete(url, headers={**headers, "If-Match": "*"}).status_code == 204


def _concrete(rule: str) -> str:
    # Any id names an id route; the instruments route takes a catalogue code.
    return re.sub(
        r"<(?:[^:<>]+:)?([^<>]+)>",
        lambda m: "phq9" if m.group(1) == "code" else "0b0d9a1e-3f6c-4f7e-9a57-2f3b8c1d4e01",
        rule,
    )


def test_each_path_is_served_by_one_route_only(app):
    """A literal segment (…/mood-entries/batch) must not also match a sibling's variable
    (…/mood-entries/<entry_id>): OPTIONS and 405 would advertise the other route's methods."""
    adapter = app.url_map.bind("localhost")
    methods: dict[str, set[str]] = {}  # a path may be split over resources (GET and DELETE /me)
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in ("static", "restx_doc.static") and rule.rule != "/api/v1/":
            methods.setdefault(rule.rule, {"OPTIONS"}).update(rule.methods or ())
    assert "/api/v1/patients/<patient_id>/mood-entries/batch" in methods
    for rule, expected in methods.items():
        assert set(adapter.allowed_methods(_concrete(rule))) == expected, rule


def test_options_on_the_batch_advertises_post_only(app):
    # OPTIONS is Flask's own answer, not an operation of the contract: no contract check.
    plain = FlaskClient(app)
    response = plain.options("/api/v1/patients/me/mood-entries/batch")
    assert response.status_code == 200
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"POST", "OPTIONS"}
    # openapi.yaml's {entry_id} template would take "batch" for an id: not its operation.
    refused = plain.get("/api/v1/patients/me/mood-entries/batch")
    _is_problem(refused, 405)
    assert {m.strip() for m in refused.headers["Allow"].split(",")} == {"POST", "OPTIONS"}


def test_flask_keeps_what_it_learnt_of_views_and_hooks_by_function(app, client):
    """MoodtrackFlask.ensure_sync remembers each synchronous function once: flask-restx
    binds a new Resource to every request, and its bound methods are known by function."""
    headers = auth(client, register_patient(client)["email"])
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    known = set(app._synchronous)
    for _ in range(20):
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert app._synchronous == known
