"""Hostile input answers 4xx problem+json, never 500: JSON nested past the interpreter's
stack, dates and instants out of any sane range, lone UTF-16 surrogates, numbers too large
for a query parameter, a cursor or a SQL integer."""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from marshmallow import fields as mfields
from sqlalchemy import func, select

from api.openapi import marshmallow_schemas as marshmallow_classes
from models import MoodEntry, Role
from models.organisations import MemberRole
from models.sessions import Observation, TreatmentSession
from schemas.common import Day, Instant, Text
from tests.conftest import ROOT, auth, link, make_organisation, make_staff, register_patient

PROBLEM = "application/problem+json"
# Far past the interpreter's recursion limit, and well under the 1 MiB body limit.
DEEP = "[" * 100_000 + "]" * 100_000
SURROGATE = "\ud800"


class _Errors(logging.Handler):
    """Keeps the app's error-level records."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    handler = _Errors()
    ours = logging.getLogger("moodtrack")  # does not propagate: caplog would see nothing
    ours.addHandler(handler)
    try:
        yield handler.records
    finally:
        ours.removeHandler(handler)


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


@pytest.fixture
def world(app, client) -> dict[str, Any]:
    """A patient with an entry, a session and an open alert; their clinician; an admin."""
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    clinician = make_staff(app)
    ch = auth(client, clinician["email"])
    link(client, ch, ph)
    admin = make_staff(app, role=Role.admin)
    pid = patient["id"]
    entry = client.post(
        "/api/v1/patients/me/mood-entries",
        json={"occurred_at": _ago(hours=1), "mood": 5},
        headers=ph,
    ).get_json()
    session = client.post(
        f"/api/v1/patients/{pid}/sessions",
        json={
            "status": "scheduled",
            "started_at": _ago(hours=2),
            "drug": "ketamine",
            "route": "iv",
            "setting": "clinic",
        },
        headers=ch,
    ).get_json()
    client.post(
        "/api/v1/patients/me/assessments",
        json={"instrument": "phq9", "answers": [1] * 9, "occurred_at": _ago(minutes=30)},
        headers=ph,
    )
    alerts = client.get(f"/api/v1/patients/{pid}/alerts", headers=ch).get_json()["items"]
    admin_headers = auth(client, admin["email"])
    # An org admin of a clinic of their own, with a member: the org admin's operations.
    organisation_id = make_organisation(app)
    org_admin = make_staff(app, organisation_id=organisation_id, member_role=MemberRole.org_admin)
    member = make_staff(app, organisation_id=organisation_id)
    hook = client.post(
        "/api/v1/webhooks",
        json={"url": "https://relay.example.org/hook", "event_types": ["alert.raised"]},
        headers=admin_headers,
    ).get_json()
    return {
        "headers": {
            "anonymous": {},
            "patient": ph,
            "clinician": ch,
            "admin": admin_headers,
            "org_admin": auth(client, org_admin["email"]),
        },
        "ids": {
            "patient_id": pid,
            "entry_id": entry["id"],
            "session_id": session["id"],
            "alert_id": alerts[0]["id"],
            "user_id": clinician["id"],
            "webhook_id": hook["id"],
            "organisation_id": organisation_id,
            "member_id": member["id"],
        },
    }


def _json_operations() -> list[tuple[str, str]]:
    """(method, path template) of every documented operation that takes a JSON body."""
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text("utf-8"))
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        and any("json" in t for t in operation.get("requestBody", {}).get("content", {}))
    )


def test_the_operations_with_json_bodies_include_login_and_refresh():
    operations = _json_operations()
    assert ("POST", "/api/v1/auth/login") in operations
    assert ("POST", "/api/v1/auth/refresh") in operations
    assert len(operations) >= 15


@pytest.mark.parametrize(("method", "template"), _json_operations())
def test_json_nested_past_the_stack_is_400_on_every_json_endpoint(
    client, world, errors_logged, method, template
):
    path = re.sub(
        r"\{(\w+)\}",
        lambda m: world["ids"][
            "member_id" if "/members/" in template and m.group(1) == "user_id" else m.group(1)
        ],
        template,
    )
    statuses = {}
    for actor, headers in world["headers"].items():
        for body in (DEEP, '{"email": ' + DEEP + ', "entries": ' + DEEP + "}"):
            response = client.open(
                path,
                method=method,
                data=body,
                content_type="application/json",
                headers={**headers, "If-Match": "*"},
            )
            assert response.status_code < 500, (actor, response.get_data(as_text=True))
            assert response.mimetype == PROBLEM
            statuses.setdefault(response.status_code, []).append(actor)
            if response.status_code == 400:
                problem = response.get_json()
                assert problem["type"] == "urn:moodtrack:problem:malformed-json"
    # Whoever may call the operation gets as far as the body: 400, malformed JSON.
    assert 400 in statuses, statuses
    assert errors_logged == []


# --- dates and instants --------------------------------------------------------------------


def test_far_dates_in_queries_are_422(client, world):
    pid, ch = world["ids"]["patient_id"], world["headers"]["clinician"]
    admin = world["headers"]["admin"]
    urls = [
        (f"/api/v1/patients/{pid}/chart.svg?metric=mood&to=9999-12-31", ch, "to"),
        (f"/api/v1/patients/{pid}/chart.svg?metric=mood&from=0001-01-01", ch, "from"),
        (f"/api/v1/patients/{pid}/trends?metric=mood&to=9999-12-31", ch, "to"),
        (f"/api/v1/patients/{pid}/report?from=1899-12-31", ch, "from"),
        ("/api/v1/audit-events?to=2200-01-01", admin, "to"),
    ]
    for url, headers, name in urls:
        response = client.get(url, headers=headers)
        assert response.status_code == 422, (url, response.get_data(as_text=True))
        assert list(response.get_json()["errors"]) == [name]


def test_query_text_that_reaches_sql_has_no_nul(client, world):
    admin = world["headers"]["admin"]
    for url in ("/api/v1/audit-events?action=%00", "/api/v1/audit-events?action=read%00"):
        response = client.get(url, headers=admin)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert list(response.get_json()["errors"]) == ["action"]
    assert client.get("/api/v1/audit-events?action=read", headers=admin).status_code == 200


def test_the_edges_of_the_date_range_are_served(client, world):
    pid, ch = world["ids"]["patient_id"], world["headers"]["clinician"]
    chart = client.get(
        f"/api/v1/patients/{pid}/chart.svg?metric=mood&from=1900-01-01&to=2199-12-31", headers=ch
    )
    assert chart.status_code == 200 and chart.mimetype == "image/svg+xml"
    for bucket in ("day", "week", "month"):
        trends = client.get(
            f"/api/v1/patients/{pid}/trends?metric=mood&bucket={bucket}"
            "&from=1900-01-01&to=2199-12-31",
            headers=ch,
        )
        assert trends.status_code == 200


def _session(**overrides: Any) -> dict[str, Any]:
    return {
        "status": "scheduled",
        "started_at": _ago(hours=1),
        "drug": "ketamine",
        "route": "iv",
        "setting": "clinic",
        **overrides,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("started_at", "9999-12-31T23:59:59-14:00"),
        ("started_at", "0001-01-01T00:00:00+14:00"),
        ("started_at", "2200-01-01T00:00:00Z"),
        ("started_at", "1899-12-31T23:59:59Z"),
        ("ended_at", "9999-12-31T23:59:59-14:00"),
        ("discharged_at", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_session_instants_out_of_range_are_422_and_store_nothing(client, db, world, field, value):
    pid, ch = world["ids"]["patient_id"], world["headers"]["clinician"]
    before = db.scalar(select(func.count()).select_from(TreatmentSession))
    response = client.post(
        f"/api/v1/patients/{pid}/sessions", json=_session(**{field: value}), headers=ch
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert list(response.get_json()["errors"]) == [field]
    assert db.scalar(select(func.count()).select_from(TreatmentSession)) == before
    url = f"/api/v1/patients/{pid}/sessions/{world['ids']['session_id']}"
    patch = client.patch(url, json={field: value}, headers={**ch, "If-Match": '"1"'})
    assert patch.status_code == 422 and list(patch.get_json()["errors"]) == [field]


def test_observation_instant_out_of_range_is_422_and_stores_nothing(client, db, world):
    pid, sid = world["ids"]["patient_id"], world["ids"]["session_id"]
    before = db.scalar(select(func.count()).select_from(Observation))
    response = client.post(
        f"/api/v1/patients/{pid}/sessions/{sid}/observations",
        json={"observed_at": "9999-12-31T23:59:59-14:00", "spo2": 98},
        headers=world["headers"]["clinician"],
    )
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["observed_at"]
    assert db.scalar(select(func.count()).select_from(Observation)) == before


# --- text that cannot be encoded -------------------------------------------------------------


def _raw(body: dict[str, Any]) -> str:
    # json.dumps escapes the lone surrogate as \ud800, as an attacker's client would send it.
    return json.dumps(body)


@pytest.mark.parametrize(
    ("method", "url", "actor", "body", "field"),
    [
        (
            "POST",
            "/api/v1/patients/me/mood-entries",
            "patient",
            {"mood": 5, "note": SURROGATE},
            "note",
        ),
        ("POST", "/api/v1/auth/register", "anonymous", {"display_name": SURROGATE}, "display_name"),
        (
            "POST",
            "/api/v1/auth/register",
            "anonymous",
            {"password": "long enough " + SURROGATE},
            "password",
        ),
        ("POST", "/api/v1/auth/login", "anonymous", {"email": SURROGATE, "password": "x"}, "email"),
        (
            "POST",
            "/api/v1/auth/login",
            "anonymous",
            {"email": "a@b.org", "password": SURROGATE},
            "password",
        ),
        (
            "POST",
            "/api/v1/me/password",
            "patient",
            {"current_password": SURROGATE, "new_password": "a long new passphrase"},
            "current_password",
        ),
        ("DELETE", "/api/v1/me", "patient", {"password": SURROGATE}, "password"),
        ("POST", "/api/v1/users", "admin", {"display_name": SURROGATE}, "display_name"),
        ("POST", "/api/v1/care-links", "patient", {"code": SURROGATE}, "code"),
        (
            "POST",
            "/api/v1/patients/{patient_id}/sessions",
            "clinician",
            {"notes": SURROGATE},
            "notes",
        ),
        (
            "POST",
            "/api/v1/patients/{patient_id}/sessions",
            "clinician",
            {"adverse_events": ["nausea", SURROGATE]},
            "adverse_events.1",
        ),
        (
            "POST",
            "/api/v1/patients/{patient_id}/sessions/{session_id}/observations",
            "clinician",
            {"note": SURROGATE},
            "note",
        ),
        ("POST", "/api/v1/alerts/{alert_id}/acknowledge", "clinician", {"note": SURROGATE}, "note"),
    ],
)
def test_a_lone_surrogate_in_any_text_field_is_422(
    client, db, world, method, url, actor, body, field
):
    defaults = {
        "/api/v1/patients/me/mood-entries": {"occurred_at": _ago(minutes=5)},
        "/api/v1/auth/register": {
            "email": f"{uuid.uuid4().hex[:8]}@example.org",
            "password": "a long enough passphrase",
            "display_name": "Pat",
            "timezone": "UTC",
        },
        "/api/v1/users": {
            "email": f"{uuid.uuid4().hex[:8]}@example.org",
            "password": "a long enough passphrase",
            "display_name": "Dr",
            "role": "clinician",
        },
        "/api/v1/patients/{patient_id}/sessions": _session(),
        "/api/v1/patients/{patient_id}/sessions/{session_id}/observations": {
            "observed_at": _ago(minutes=5),
            "spo2": 97,
        },
    }
    path = re.sub(r"\{(\w+)\}", lambda m: world["ids"][m.group(1)], url)
    response = client.open(
        path,
        method=method,
        data=_raw({**defaults.get(url, {}), **body}),
        content_type="application/json",
        headers=world["headers"][actor],
    )
    assert response.status_code == 422, response.get_data(as_text=True)
    assert list(response.get_json()["errors"]) == [field]


def test_a_surrogate_fails_only_its_own_batch_item(client, db, world):
    ph = world["headers"]["patient"]
    items = [
        {"occurred_at": _ago(minutes=20), "mood": 4, "note": "fine"},
        {"occurred_at": _ago(minutes=19), "mood": 4, "note": SURROGATE},
        {"occurred_at": _ago(minutes=18), "mood": 4, SURROGATE: 1},
    ]
    before = db.scalar(select(func.count()).select_from(MoodEntry))
    response = client.post(
        "/api/v1/patients/me/mood-entries/batch",
        data=_raw({"entries": items}),
        content_type="application/json",
        headers=ph,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [201, 422, 422]
    assert list(results[1]["problem"]["errors"]) == ["note"]
    assert db.scalar(select(func.count()).select_from(MoodEntry)) == before + 1


def test_an_unknown_field_named_by_a_surrogate_is_422(client, world):
    response = client.post(
        "/api/v1/patients/me/mood-entries",
        data=_raw({"occurred_at": _ago(minutes=5), "mood": 5, SURROGATE: 1}),
        content_type="application/json",
        headers=world["headers"]["patient"],
    )
    assert response.status_code == 422
    assert len(response.get_json()["errors"]) == 1


def test_paired_surrogates_are_ordinary_text(client, world):
    emoji = "\U0001f60a"  # sent as the escaped pair \ud83d\ude0a
    response = client.post(
        "/api/v1/patients/me/mood-entries",
        data=_raw({"occurred_at": _ago(minutes=5), "mood": 5, "note": emoji}),
        content_type="application/json",
        headers=world["headers"]["patient"],
    )
    assert response.status_code == 201 and response.get_json()["note"] == emoji


# --- numbers in query strings and cursors ----------------------------------------------------


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_query_numbers_that_do_not_fit_are_422(client, world):
    ph, ch, admin = (world["headers"][a] for a in ("patient", "clinician", "admin"))
    me = "/api/v1/patients/me/mood-entries"
    far = "9999-12-31T23:59:59-14:00"
    cases = [
        (f"{me}?limit=%C2%B2", ph, "limit"),  # "²" is a digit to str.isdigit, not to int()
        (f"{me}?limit=" + "9" * 5000, ph, "limit"),
        (f"{me}/changes?since=%C2%B2", ph, "since"),
        (f"{me}/changes?since=" + "9" * 5000, ph, "since"),
        (f"{me}?cursor=" + _cursor([far, str(uuid.uuid4())]), ph, "cursor"),
        (f"{me}?cursor=" + _cursor(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]), ph, "cursor"),
        (
            "/api/v1/audit-events?cursor=" + _cursor(["2026-01-01T00:00:00+00:00", 2**63]),
            admin,
            "cursor",
        ),
        (
            "/api/v1/audit-events?cursor=" + _cursor(["2026-01-01T00:00:00+00:00", 10**30]),
            admin,
            "cursor",
        ),
        ("/api/v1/patients?cursor=" + _cursor([2**63, "-open_alerts", None]), ch, "cursor"),
        (
            "/api/v1/alerts?cursor="
            + _cursor([10**30, "2026-01-01T00:00:00+00:00", str(uuid.uuid4())]),
            ch,
            "cursor",
        ),
        # A cursor is JSON too: nested past the parser's stack, it is no cursor of ours.
        (f"{me}?cursor=" + base64.urlsafe_b64encode(b"[" * 2500).decode(), ph, "cursor"),
        ("/api/v1/patients?cursor=" + base64.urlsafe_b64encode(b"[" * 2500).decode(), ch, "cursor"),
        # change_seq and the alert rank are INTEGER columns: 2**31 does not fit.
        (f"{me}/changes?since={2**31}", ph, "since"),
        (
            "/api/v1/alerts?cursor="
            + _cursor([2**31, "2026-01-01T00:00:00+00:00", str(uuid.uuid4())]),
            ch,
            "cursor",
        ),
    ]
    for url, headers, name in cases:
        response = client.get(url, headers=headers)
        assert response.status_code == 422, (url[:80], response.get_data(as_text=True))
        assert list(response.get_json()["errors"]) == [name], url[:80]


def test_the_largest_numbers_that_fit_are_served(client, world):
    ph, ch, admin = (world["headers"][a] for a in ("patient", "clinician", "admin"))
    at = "2026-01-01T00:00:00+00:00"
    sync = client.get(f"/api/v1/patients/me/mood-entries/changes?since={2**31 - 1}", headers=ph)
    assert sync.status_code == 200 and sync.get_json()["items"] == []
    audit = client.get("/api/v1/audit-events?cursor=" + _cursor([at, 2**63 - 1]), headers=admin)
    assert audit.status_code == 200
    alerts = client.get(
        "/api/v1/alerts?cursor=" + _cursor([2**31 - 1, at, str(uuid.uuid4())]), headers=ch
    )
    assert alerts.status_code == 200
    cohort = client.get(
        "/api/v1/patients?cursor=" + _cursor([2**63 - 1, "-open_alerts", None, None]), headers=ch
    )
    assert cohort.status_code == 200 and cohort.get_json()["items"] == []


def _leaf_fields(field: Any) -> Iterator[Any]:
    if isinstance(field, mfields.List):
        yield from _leaf_fields(field.inner)
    elif isinstance(field, mfields.Nested):
        for inner in field.schema.fields.values():
            yield from _leaf_fields(inner)
    else:
        yield field


def test_every_input_schema_reads_text_and_time_through_the_bounded_fields():
    inputs = {
        name: cls for name, cls in marshmallow_classes().items() if name.endswith(("In", "Update"))
    }
    assert {"MoodEntryIn", "SessionIn", "ObservationIn", "LoginIn", "RefreshIn"} <= set(inputs)
    for name, cls in inputs.items():
        for field_name, declared in cls().fields.items():
            for field in _leaf_fields(declared):
                where = f"{name}.{field_name}"
                if isinstance(field, mfields.String):
                    assert isinstance(field, Text), where
                if isinstance(field, mfields.DateTime):
                    assert isinstance(field, Instant), where
                if isinstance(field, mfields.Date):
                    assert isinstance(field, Day), where


@pytest.mark.parametrize("cursor", ["é", "ключ", "😀" * 3, "a\u00a0b"])
def test_a_cursor_of_non_ascii_text_is_422_not_500(client, world, errors_logged, cursor):
    # Found by schemathesis in CI: base64 decoding refuses non-ASCII text with a ValueError.
    response = client.get(
        "/api/v1/care-links", query_string={"cursor": cursor}, headers=world["headers"]["patient"]
    )
    assert response.status_code == 422 and "cursor" in response.get_json()["errors"]
    assert errors_logged == []
