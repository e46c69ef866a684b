"""A patient with a record of every kind, written through the API with a marker string in
every free-text field (used by the erasure and the no-health-data-in-logs tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import auth, link, login, make_staff, register_patient, unique_email


def new_marker() -> str:
    """A string that cannot occur by chance (fits display names and idempotency keys)."""
    return f"MARKER{uuid.uuid4().hex}"


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_json())
    return response.get_json() if response.data else {}


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def populate(app: Flask, client: FlaskClient, marker: str) -> dict[str, Any]:
    """Register a patient (display name = marker) and write every kind of record."""
    email = unique_email("erase")
    patient = register_patient(client, email=email, timezone="Europe/Berlin", display_name=marker)
    tokens = login(client, email)
    ph = {"Authorization": f"Bearer {tokens['access_token']}"}
    clinician = make_staff(app)
    ch = auth(client, clinician["email"])
    link(client, ch, ph)
    me = "/api/v1/patients/me"

    profile = client.get("/api/v1/me", headers=ph)
    _ok(
        client.patch(
            "/api/v1/me",
            json={"display_name": marker},
            headers={**ph, "If-Match": profile.headers["ETag"]},
        ),
        200,
    )
    # Mood: a create with an idempotency key, an edit (leaves a version), a deletion, a batch.
    entry = _ok(
        client.post(
            f"{me}/mood-entries",
            json={"occurred_at": _ago(hours=3), "mood": 7, "note": f"note {marker}"},
            headers={**ph, "Idempotency-Key": f"key-{marker}"},
        )
    )
    _ok(
        client.patch(
            f"{me}/mood-entries/{entry['id']}",
            json={"note": f"edited {marker}", "mood": 2},
            headers={**ph, "If-Match": '"1"'},
        ),
        200,
    )
    doomed = _ok(
        client.post(
            f"{me}/mood-entries",
            json={"occurred_at": _ago(hours=2), "mood": 5, "note": marker},
            headers=ph,
        )
    )
    _ok(
        client.delete(f"{me}/mood-entries/{doomed['id']}", headers={**ph, "If-Match": '"1"'}),
        204,
    )
    _ok(
        client.post(
            f"{me}/mood-entries/batch",
            json={
                "entries": [
                    {"occurred_at": _ago(hours=5), "mood": 4, "note": f"batch {marker}"},
                    {"id": str(uuid.uuid4()), "occurred_at": _ago(hours=4), "mood": 3},
                ]
            },
            headers=ph,
        ),
        200,
    )
    # Sessions: a home session by the patient, a clinic session and an observation by the
    # clinician, every free-text field carrying the marker.
    started = datetime.now(UTC) - timedelta(days=1)
    free_text = {
        "notes": f"session {marker}",
        "concomitant_medications": [f"med {marker}"],
        "adverse_events": [f"event {marker}"],
    }
    _ok(
        client.post(
            f"{me}/sessions",
            json={
                "status": "completed",
                "started_at": (started - timedelta(days=2)).isoformat(),
                "drug": "ketamine",
                "route": "oral",
                "dose_mg": 150,
                "setting": "home",
                **free_text,
            },
            headers=ph,
        )
    )
    clinic = _ok(
        client.post(
            f"/api/v1/patients/{patient['id']}/sessions",
            json={
                "status": "completed",
                "started_at": started.isoformat(),
                "ended_at": (started + timedelta(minutes=40)).isoformat(),
                "discharged_at": (started + timedelta(hours=2)).isoformat(),
                "drug": "ketamine",
                "route": "iv",
                "dose_mg": 35,
                "weight_kg": 70,
                "setting": "clinic",
                **free_text,
            },
            headers=ch,
        )
    )
    _ok(
        client.patch(
            f"/api/v1/patients/{patient['id']}/sessions/{clinic['id']}",
            json={"notes": f"patched {marker}"},
            headers={**ch, "If-Match": '"1"'},
        ),
        200,
    )
    _ok(
        client.post(
            f"/api/v1/patients/{patient['id']}/sessions/{clinic['id']}/observations",
            json={
                "observed_at": (started + timedelta(minutes=40)).isoformat(),
                "systolic": 130,
                "diastolic": 85,
                "note": f"observation {marker}",
            },
            headers=ch,
        )
    )
    # Questionnaires: a positive item 9 raises an alert; a deleted one leaves a version.
    crisis = _ok(
        client.post(
            f"{me}/assessments",
            json={
                "instrument": "phq9",
                "answers": [2, 2, 2, 2, 1, 1, 1, 1, 1],
                "occurred_at": _ago(hours=1),
            },
            headers=ph,
        )
    )
    gone = _ok(
        client.post(
            f"{me}/assessments",
            json={"instrument": "gad7", "answers": [1] * 7, "occurred_at": _ago(hours=6)},
            headers=ph,
        )
    )
    _ok(
        client.delete(f"{me}/assessments/{gone['id']}", headers={**ph, "If-Match": '"1"'}),
        204,
    )
    alerts = _ok(client.get("/api/v1/alerts", headers=ch), 200)["items"]
    assert alerts, "the positive item 9 raised no alert"
    _ok(
        client.post(
            f"/api/v1/alerts/{alerts[0]['id']}/acknowledge",
            json={"note": f"ack {marker}"},
            headers=ch,
        ),
        200,
    )
    # A second session (token family), and a rotated refresh token in the first.
    login(client, email)
    refreshed = _ok(
        client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        200,
    )
    return {
        "id": patient["id"],
        "email": email,
        "headers": {"Authorization": f"Bearer {refreshed['access_token']}"},
        "refresh_token": refreshed["refresh_token"],
        "clinician_headers": ch,
        "entry_id": entry["id"],
        "session_id": clinic["id"],
        "assessment_id": crisis["id"],
    }
