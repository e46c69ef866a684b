"""Trends, effect and course over HTTP: parameters, access and the figures' wiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from tests.conftest import auth, link, make_staff, register_patient

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    base = f"/api/v1/patients/{patient['id']}"
    return {"patient": patient, "ph": ph, "ch": ch, "base": base}


def _mood(client, care, at, value, **extra):
    response = client.post(
        "/api/v1/patients/me/mood-entries",
        json={"occurred_at": at.isoformat(), "mood": value, **extra},
        headers=care["ph"],
    )
    assert response.status_code == 201


def _session(client, care, start, status="completed"):
    body = {
        "status": status,
        "started_at": start.isoformat(),
        "drug": "ketamine",
        "route": "iv",
        "dose_mg": 35 if status == "completed" else None,
        "weight_kg": 70,
        "setting": "clinic",
    }
    return client.post(f"{care['base']}/sessions", json=body, headers=care["ch"]).get_json()


def test_trend_series_summary_and_parameters(client, care):
    start = NOW - timedelta(days=20)
    for day in range(0, 20, 2):
        _mood(client, care, start + timedelta(days=day), day % 10)
    response = client.get(f"{care['base']}/trends?metric=mood", headers=care["ch"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["direction"] == "up" and body["bucket"] == "day"
    assert len(body["series"]) == 10 and len(body["rolling7"]) == 10
    assert body["summary"]["baseline"] is not None and body["slope_per_week"] is not None
    weekly = client.get(
        f"{care['base']}/trends?metric=mood&bucket=week", headers=care["ph"]
    ).get_json()
    assert weekly["rolling7"] is None and sum(b["n"] for b in weekly["series"]) == 10
    for query in (
        "metric=happiness",
        "metric=mood&bucket=year",
        "metric=mood&from=2026-03-02&to=2026-03-01",
        "metric=mood&from=yesterday",
        "",
    ):
        assert (
            client.get(f"{care['base']}/trends?{query}", headers=care["ch"]).status_code == 422
        ), query


def test_effect_and_course(client, care):
    start = NOW - timedelta(days=3)
    _mood(client, care, start - timedelta(hours=2), 3)
    first = _session(client, care, start)
    cancelled = _session(client, care, start + timedelta(hours=30), status="cancelled")
    _mood(client, care, start + timedelta(hours=3), 7)
    _mood(client, care, start + timedelta(hours=24), 6)
    effect = client.get(f"{care['base']}/sessions/{first['id']}/effect", headers=care["ph"])
    assert effect.status_code == 200
    body = effect.get_json()
    assert body["number"] == 1 and body["pre"] == 3.0 and body["pre_source"] == "last_24h"
    windows = {w["name"]: w for w in body["windows"]}
    assert windows["acute"]["value"] == 7.0 and windows["acute"]["delta"] == 4.0
    assert windows["day1"]["value"] == 6.0
    assert body["durability_days"] == 1 and body["effect_ended"] is False
    assert (
        client.get(
            f"{care['base']}/sessions/{cancelled['id']}/effect", headers=care["ch"]
        ).status_code
        == 409
    )
    assert (
        client.get(
            f"{care['base']}/sessions/{first['id']}/effect?metric=nope", headers=care["ch"]
        ).status_code
        == 422
    )
    course = client.get(f"{care['base']}/course", headers=care["ch"]).get_json()
    assert course["sessions_completed"] == 1
    assert course["sessions"][0]["acute"] == 7.0 and course["sessions"][0]["pre"] == 3.0
    assert course["phq9"]["baseline"] is None and course["mood"]["direction"] == "up"


def test_reports_are_private(app, client, care):
    stranger = auth(client, make_staff(app)["email"])
    other = auth(client, register_patient(client)["email"])
    for path in ("trends?metric=mood", "course"):
        for headers in (stranger, other):
            assert client.get(f"{care['base']}/{path}", headers=headers).status_code == 404
        assert client.get(f"{care['base']}/{path}").status_code == 401


def test_a_trend_costs_four_selects_and_one_audit_insert(app, client, care):
    """Principal, care link, the series and the summary (one statement for baseline and
    current); then the read's audit row. No statement per day, session or measurement."""
    start = NOW - timedelta(days=40)
    _session(client, care, start + timedelta(days=20))
    for day in range(40):
        _mood(client, care, start + timedelta(days=day, hours=9), day % 10)
    url = f"{care['base']}/trends?metric=mood"
    assert client.get(url, headers=care["ch"]).status_code == 200  # pseudonyms now known
    engine = app.extensions["moodtrack"].engine
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        response = client.get(url, headers=care["ch"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200 and len(response.get_json()["series"]) == 40
    # The summary statement starts WITH (its common table expressions).
    assert seen.count("SELECT") + seen.count("WITH") == 4 and seen.count("INSERT") == 1
