"""Treatment sessions: rules, numbering, permissions, observations and monitoring."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from models.sessions import Observation, TreatmentSession
from tests.conftest import auth, link, make_staff, register_patient

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat()


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    patient_headers = auth(client, patient["email"])
    clinician_headers = auth(client, make_staff(app)["email"])
    link(client, clinician_headers, patient_headers)
    return {
        "patient": patient,
        "patient_headers": patient_headers,
        "clinician_headers": clinician_headers,
        "url": f"/api/v1/patients/{patient['id']}/sessions",
    }


def session_body(**overrides):
    body = {
        "status": "completed",
        "started_at": iso(NOW - timedelta(days=2)),
        "ended_at": iso(NOW - timedelta(days=2) + timedelta(minutes=40)),
        "discharged_at": iso(NOW - timedelta(days=2) + timedelta(hours=2)),
        "drug": "ketamine",
        "route": "iv",
        "dose_mg": 35,
        "weight_kg": 70,
        "setting": "clinic",
        "concomitant_medications": ["sertraline 100 mg"],
        "adverse_events": [],
        "notes": "Tolerated well.",
    }
    body.update(overrides)
    return body


def post(client, care, **overrides):
    return client.post(
        care["url"], json=session_body(**overrides), headers=care["clinician_headers"]
    )


def test_clinician_records_a_completed_iv_session(client, care):
    response = post(client, care)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["dose_mg_per_kg"] == 0.5
    assert body["dose_flags"] == []
    assert body["number"] == 1
    assert body["concomitant_medications"] == ["sertraline 100 mg"]
    assert body["utc_offset"] == "+00:00"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"drug": "ketamin"}, "drug"),
        ({"route": "rectal"}, "route"),
        ({"drug": "esketamine", "route": "iv", "dose_mg": 56, "weight_kg": None}, "route"),
        ({"drug": "esketamine", "route": "intranasal", "dose_mg": 50}, "dose_mg"),
        ({"dose_mg": 0}, "dose_mg"),
        ({"dose_mg": -5}, "dose_mg"),
        ({"dose_mg": "35"}, "dose_mg"),
        ({"weight_kg": 19.9}, "weight_kg"),
        ({"weight_kg": 350.1}, "weight_kg"),
        ({"ended_at": iso(NOW - timedelta(days=3))}, "ended_at"),
        ({"discharged_at": iso(NOW - timedelta(days=3))}, "discharged_at"),
        ({"status": "done"}, "status"),
        ({"dose_mg": None}, "dose_mg"),  # completed needs a dose
        ({"started_at": iso(NOW + timedelta(days=1))}, "started_at"),  # completed in future
        ({"started_at": "2026-11-20T10:00:00"}, "started_at"),  # naive
        ({"setting": "hospital"}, "setting"),
        ({"concomitant_medications": ["x" * 201]}, "concomitant_medications"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_sessions_are_422(client, care, overrides, field):
    response = post(client, care, **overrides)
    assert response.status_code == 422, response.get_json()
    assert any(key.startswith(field) for key in response.get_json()["errors"])
    assert client.get(care["url"], headers=care["clinician_headers"]).get_json()["items"] == []


@pytest.mark.parametrize("dose", [28, 56, 84])
def test_esketamine_doses(client, care, dose):
    response = post(
        client, care, drug="esketamine", route="intranasal", dose_mg=dose, weight_kg=None
    )
    assert response.status_code == 201
    assert response.get_json()["dose_mg_per_kg"] is None


@pytest.mark.parametrize(
    ("route", "dose", "weight", "flags"),
    [
        ("iv", 70, 70, ["dose_above_usual_range"]),  # 1.0 mg/kg IV
        ("iv", 5, 70, ["dose_below_usual_range"]),
        ("iv", 52.5, 70, []),  # 0.75 exactly is within
        ("oral", 150, 70, []),  # ~2.1 mg/kg oral is usual
        ("iv", 35, None, ["weight_missing"]),
    ],
)
def test_unusual_doses_are_flagged_not_refused(client, care, route, dose, weight, flags):
    response = post(client, care, route=route, dose_mg=dose, weight_kg=weight)
    assert response.status_code == 201
    assert response.get_json()["dose_flags"] == flags


def test_numbering_follows_completed_sessions_by_start(client, care):
    h = care["clinician_headers"]
    first = post(
        client, care, started_at=iso(NOW - timedelta(days=10)), ended_at=None, discharged_at=None
    ).get_json()
    third = post(
        client, care, started_at=iso(NOW - timedelta(days=3)), ended_at=None, discharged_at=None
    ).get_json()
    cancelled = post(
        client,
        care,
        status="cancelled",
        started_at=iso(NOW - timedelta(days=6)),
        ended_at=None,
        discharged_at=None,
    ).get_json()
    scheduled = post(
        client,
        care,
        status="scheduled",
        dose_mg=None,
        started_at=iso(NOW + timedelta(days=2)),
        ended_at=None,
        discharged_at=None,
    ).get_json()
    assert (first["number"], third["number"]) == (1, 2)
    assert cancelled["number"] is None and scheduled["number"] is None
    # A back-dated session between them renumbers the later one at once.
    middle = post(
        client, care, started_at=iso(NOW - timedelta(days=5)), ended_at=None, discharged_at=None
    ).get_json()
    assert middle["number"] == 2
    numbers = {i["id"]: i["number"] for i in client.get(care["url"], headers=h).get_json()["items"]}
    assert numbers[third["id"]] == 3 and numbers[first["id"]] == 1
    # Deleting the first renumbers the rest.
    assert (
        client.delete(f"{care['url']}/{first['id']}", headers={**h, "If-Match": '"1"'}).status_code
        == 204
    )
    numbers = {i["id"]: i["number"] for i in client.get(care["url"], headers=h).get_json()["items"]}
    assert numbers == {
        middle["id"]: 1,
        third["id"]: 2,
        cancelled["id"]: None,
        scheduled["id"]: None,
    }


def test_status_moves_only_from_scheduled(client, care):
    h = care["clinician_headers"]
    scheduled = post(
        client,
        care,
        status="scheduled",
        dose_mg=None,
        started_at=iso(NOW - timedelta(hours=1)),
        ended_at=None,
        discharged_at=None,
    )
    url = f"{care['url']}/{scheduled.get_json()['id']}"
    no_dose = client.patch(
        url, json={"status": "completed"}, headers={**h, "If-Match": scheduled.headers["ETag"]}
    )
    assert no_dose.status_code == 422 and "dose_mg" in no_dose.get_json()["errors"]
    done = client.patch(
        url,
        json={"status": "completed", "dose_mg": 35},
        headers={**h, "If-Match": scheduled.headers["ETag"]},
    )
    assert done.status_code == 200 and done.get_json()["number"] == 1
    back = client.patch(
        url, json={"status": "scheduled"}, headers={**h, "If-Match": done.headers["ETag"]}
    )
    assert back.status_code == 422 and "status" in back.get_json()["errors"]
    cancel = client.patch(
        url, json={"status": "cancelled"}, headers={**h, "If-Match": done.headers["ETag"]}
    )
    assert cancel.status_code == 422
    other = post(client, care, status="cancelled", ended_at=None, discharged_at=None)
    revive = client.patch(
        f"{care['url']}/{other.get_json()['id']}",
        json={"status": "completed"},
        headers={**h, "If-Match": other.headers["ETag"]},
    )
    assert revive.status_code == 422


def test_patient_records_only_home_sessions(client, care):
    ph = care["patient_headers"]
    clinic = client.post(care["url"], json=session_body(), headers=ph)
    assert clinic.status_code == 403
    home = client.post(
        "/api/v1/patients/me/sessions",
        json=session_body(setting="home", route="oral", dose_mg=150),
        headers=ph,
    )
    assert home.status_code == 201
    clinic_by_doctor = post(client, care)
    url = f"{care['url']}/{clinic_by_doctor.get_json()['id']}"
    assert (
        client.patch(url, json={"notes": "mine"}, headers={**ph, "If-Match": '"1"'}).status_code
        == 403
    )
    assert client.delete(url, headers={**ph, "If-Match": '"1"'}).status_code == 403
    home_url = f"{care['url']}/{home.get_json()['id']}"
    assert (
        client.patch(
            home_url, json={"setting": "clinic"}, headers={**ph, "If-Match": '"1"'}
        ).status_code
        == 403
    )
    assert (
        client.patch(
            home_url, json={"notes": "felt calm"}, headers={**ph, "If-Match": '"1"'}
        ).status_code
        == 200
    )


def test_outsiders_get_404_and_anonymous_401(app, client, care):
    created = post(client, care).get_json()
    url = f"{care['url']}/{created['id']}"
    stranger = auth(client, make_staff(app)["email"])
    other = auth(client, register_patient(client)["email"])
    for headers in (stranger, other):
        assert client.get(url, headers=headers).status_code == 404
        assert client.get(care["url"], headers=headers).status_code == 404
    assert client.get(url).status_code == 401
    assert (
        client.get(f"{care['url']}/not-a-uuid", headers=care["clinician_headers"]).status_code
        == 404
    )


def test_observations_and_monitoring_checklist(client, care):
    start = NOW - timedelta(days=1)
    session = post(
        client,
        care,
        drug="esketamine",
        route="intranasal",
        dose_mg=56,
        weight_kg=None,
        started_at=iso(start),
        ended_at=iso(start + timedelta(minutes=20)),
        discharged_at=iso(start + timedelta(minutes=90)),
    ).get_json()
    checklist = {c["item"]: (c["required"], c["present"]) for c in session["monitoring"]}
    assert checklist == {
        "bp_before_dosing": (True, False),
        "bp_at_40_minutes": (True, False),
        "bp_before_discharge": (True, False),
        "observation_2_hours": (True, False),
    }
    url = f"{care['url']}/{session['id']}/observations"
    h = care["clinician_headers"]
    for minutes in (-10, 40, 85):
        response = client.post(
            url,
            json={
                "observed_at": iso(start + timedelta(minutes=minutes)),
                "systolic": 128,
                "diastolic": 82,
                "heart_rate": 74,
                "spo2": 98,
                "sedation_moaas": 5,
                "cadss_total": 4,
            },
            headers=h,
        )
        assert response.status_code == 201
    view = client.get(f"{care['url']}/{session['id']}", headers=h).get_json()
    checklist = {c["item"]: c["present"] for c in view["monitoring"]}
    assert checklist == {
        "bp_before_dosing": True,
        "bp_at_40_minutes": True,
        "bp_before_discharge": True,
        "observation_2_hours": False,
    }
    etag = client.get(f"{care['url']}/{session['id']}", headers=h).headers["ETag"]
    longer = client.patch(
        f"{care['url']}/{session['id']}",
        json={"discharged_at": iso(start + timedelta(hours=2, minutes=5))},
        headers={**h, "If-Match": etag},
    ).get_json()
    checklist = {c["item"]: c["present"] for c in longer["monitoring"]}
    # Discharge moved later: the last BP is no longer "before discharge", and no reading
    # shows two hours of observation yet (a discharge time alone shows nothing).
    assert checklist["observation_2_hours"] is False and checklist["bp_before_discharge"] is False
    two_hours = {"observed_at": iso(start + timedelta(hours=2)), "systolic": 126, "diastolic": 80}
    assert client.post(url, json=two_hours, headers=h).status_code == 201
    view = client.get(f"{care['url']}/{session['id']}", headers=h).get_json()
    checklist = {c["item"]: c["present"] for c in view["monitoring"]}
    assert checklist["observation_2_hours"] is True and checklist["bp_before_discharge"] is True
    listed = client.get(url, headers=care["patient_headers"]).get_json()["items"]
    assert [o["systolic"] for o in listed] == [128, 128, 128, 126]


def test_ketamine_does_not_require_two_hours(client, care):
    session = post(client, care).get_json()
    required = {c["item"]: c["required"] for c in session["monitoring"]}
    assert required["observation_2_hours"] is False


@pytest.mark.parametrize(
    "reading",
    [
        {"systolic": 49},
        {"systolic": 301},
        {"diastolic": 19},
        {"diastolic": 201},
        {"heart_rate": 19},
        {"heart_rate": 251},
        {"spo2": 49},
        {"spo2": 101},
        {"sedation_moaas": 6},
        {"sedation_moaas": -1},
        {"cadss_total": 93},
        {"spo2": 97.5},
        {},
    ],
)
def test_observation_ranges(client, care, reading):
    session = post(client, care).get_json()
    response = client.post(
        f"{care['url']}/{session['id']}/observations",
        json={"observed_at": iso(NOW - timedelta(days=2)), **reading},
        headers=care["clinician_headers"],
    )
    assert response.status_code == 422


def test_patient_cannot_record_observations(client, care):
    session = post(client, care).get_json()
    response = client.post(
        f"{care['url']}/{session['id']}/observations",
        json={"observed_at": iso(NOW), "systolic": 120, "diastolic": 80},
        headers=care["patient_headers"],
    )
    assert response.status_code == 403


def _sessions_stored(db, care) -> int:
    return db.scalar(
        select(func.count())
        .select_from(TreatmentSession)
        .where(TreatmentSession.patient_id == uuid.UUID(care["patient"]["id"]))
    )


def test_session_create_is_idempotent(client, db, care):
    body = session_body(id="5b0f3c4e-1f7a-4c47-9d3a-9f2a4b1f0c11")
    h = care["clinician_headers"]
    first = client.post(care["url"], json=body, headers=h)
    assert first.status_code == 201
    replay = client.post(care["url"], json=body, headers=h)
    assert replay.status_code == 200 and replay.get_json() == first.get_json()
    assert client.post(care["url"], json={**body, "dose_mg": 40}, headers=h).status_code == 409
    assert _sessions_stored(db, care) == 1


def test_session_create_with_an_idempotency_key(client, db, care):
    h = {**care["clinician_headers"], "Idempotency-Key": "tablet-7-session-1"}
    body = session_body()
    first = client.post(care["url"], json=body, headers=h)
    assert first.status_code == 201
    replay = client.post(care["url"], json=body, headers=h)
    assert replay.status_code == 200 and replay.get_json()["id"] == first.get_json()["id"]
    assert client.post(care["url"], json={**body, "dose_mg": 40}, headers=h).status_code == 409
    assert _sessions_stored(db, care) == 1
    # Without the key the same body is a new session.
    again = client.post(care["url"], json=body, headers=care["clinician_headers"])
    assert again.status_code == 201 and _sessions_stored(db, care) == 2


def _observations_stored(db, session_id: str) -> int:
    return db.scalar(
        select(func.count())
        .select_from(Observation)
        .where(Observation.session_id == uuid.UUID(session_id))
    )


def _reading(**overrides):
    return {
        "observed_at": iso(NOW - timedelta(days=2)),
        "systolic": 130,
        "diastolic": 85,
        **overrides,
    }


def test_observation_create_with_a_client_id_is_idempotent(client, db, care):
    session = post(client, care).get_json()
    url = f"{care['url']}/{session['id']}/observations"
    h = care["clinician_headers"]
    body = _reading(id="0c6b7a52-4a0e-4a8b-8d0e-61a0d2f2b5a1")
    first = client.post(url, json=body, headers=h)
    assert first.status_code == 201 and first.get_json()["id"] == body["id"]
    replay = client.post(url, json=body, headers=h)
    assert replay.status_code == 200 and replay.get_json() == first.get_json()
    clash = client.post(url, json={**body, "systolic": 150}, headers=h)
    assert clash.status_code == 409 and clash.mimetype == "application/problem+json"
    # The same id sent to another session of the patient is a clash, not a replay.
    other = post(client, care, started_at=iso(NOW - timedelta(days=5))).get_json()
    moved = client.post(f"{care['url']}/{other['id']}/observations", json=body, headers=h)
    assert moved.status_code == 409
    assert _observations_stored(db, session["id"]) == 1
    assert _observations_stored(db, other["id"]) == 0
    listed = client.get(url, headers=h).get_json()["items"]
    assert [o["systolic"] for o in listed] == [130]


def test_observation_create_with_an_idempotency_key(client, db, care):
    session = post(client, care).get_json()
    url = f"{care['url']}/{session['id']}/observations"
    h = {**care["clinician_headers"], "Idempotency-Key": "tablet-7-reading-42"}
    first = client.post(url, json=_reading(), headers=h)
    assert first.status_code == 201
    for _ in range(3):  # the clinic tablet's retries
        replay = client.post(url, json=_reading(), headers=h)
        assert replay.status_code == 200 and replay.get_json() == first.get_json()
    assert client.post(url, json=_reading(spo2=97), headers=h).status_code == 409
    assert _observations_stored(db, session["id"]) == 1
    # Without the key the same readings are a new observation.
    assert client.post(url, json=_reading(), headers=care["clinician_headers"]).status_code == 201
    assert _observations_stored(db, session["id"]) == 2
    bad = client.post(url, json=_reading(), headers={**h, "Idempotency-Key": "no spaces"})
    assert bad.status_code == 422
