"""Check-ins linked to sessions and the post_session_drop alert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models.alerts import Alert
from tests.conftest import auth, link, make_staff, register_patient

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    return {
        "patient": patient,
        "ph": ph,
        "ch": ch,
        "sessions": f"/api/v1/patients/{patient['id']}/sessions",
        "mood": "/api/v1/patients/me/mood-entries",
    }


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
    response = client.post(care["sessions"], json=body, headers=care["ch"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _mood(client, care, at, mood, **extra):
    return client.post(
        care["mood"],
        json={"occurred_at": at.isoformat(), "mood": mood, **extra},
        headers=care["ph"],
    )


def _alerts(db, patient_id):
    return db.scalars(
        select(Alert).where(Alert.patient_id == uuid.UUID(patient_id)).order_by(Alert.created_at)
    ).all()


def test_linked_checkins_must_sit_on_the_right_side(client, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    assert (
        _mood(client, care, start - timedelta(hours=1), 6, session_id=sid, phase="pre").status_code
        == 201
    )
    assert (
        _mood(client, care, start + timedelta(hours=1), 6, session_id=sid, phase="post").status_code
        == 201
    )
    late_pre = _mood(client, care, start + timedelta(minutes=1), 6, session_id=sid, phase="pre")
    assert late_pre.status_code == 422 and "phase" in late_pre.get_json()["errors"]
    early_post = _mood(client, care, start - timedelta(minutes=1), 6, session_id=sid, phase="post")
    assert early_post.status_code == 422
    assert _mood(client, care, start, 6, session_id=sid, phase="pre").status_code == 422
    alone = _mood(client, care, start - timedelta(hours=1), 6, session_id=sid)
    assert alone.status_code == 422 and "phase" in alone.get_json()["errors"]
    assert _mood(client, care, start, 6, phase="pre").status_code == 422
    assert _mood(client, care, start, 6, session_id=sid, phase="during").status_code == 422


def test_another_patients_session_cannot_be_linked(app, client, care):
    other = register_patient(client)
    oh = auth(client, other["email"])
    start = NOW - timedelta(hours=5)
    sid = _session(client, care, start)
    response = client.post(
        "/api/v1/patients/me/mood-entries",
        json={
            "occurred_at": (start - timedelta(hours=1)).isoformat(),
            "mood": 5,
            "session_id": sid,
            "phase": "pre",
        },
        headers=oh,
    )
    assert response.status_code == 422 and "session_id" in response.get_json()["errors"]
    unknown = _mood(
        client, care, start - timedelta(hours=1), 5, session_id=str(uuid.uuid4()), phase="pre"
    )
    assert unknown.status_code == 422


def test_patch_keeps_the_link_consistent(client, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    created = _mood(client, care, start - timedelta(hours=2), 6, session_id=sid, phase="pre")
    url = f"{care['mood']}/{created.get_json()['id']}"
    moved = client.patch(
        url,
        json={"occurred_at": (start + timedelta(hours=1)).isoformat()},
        headers={**care["ph"], "If-Match": '"1"'},
    )
    assert moved.status_code == 422
    relinked = client.patch(
        url,
        json={"occurred_at": (start + timedelta(hours=1)).isoformat(), "phase": "post"},
        headers={**care["ph"], "If-Match": '"1"'},
    )
    assert relinked.status_code == 200 and relinked.get_json()["phase"] == "post"


def test_post_session_drop_from_linked_pre_mood(client, db, care):
    start = NOW - timedelta(hours=60)
    sid = _session(client, care, start)
    for mood in (7, 8):  # pre = 7.5
        _mood(client, care, start - timedelta(hours=1), mood, session_id=sid, phase="pre")
    _mood(client, care, start - timedelta(hours=3), 1)  # unlinked: ignored, linked pre exists
    assert _mood(client, care, start + timedelta(hours=10), 5).status_code == 201  # drop 2.5
    assert _alerts(db, care["patient"]["id"]) == []
    dropped = _mood(client, care, start + timedelta(hours=20), 4)  # drop 3.5
    alerts = _alerts(db, care["patient"]["id"])
    assert [a.rule for a in alerts] == ["post_session_drop"]
    assert str(alerts[0].source_id) == dropped.get_json()["id"]
    assert alerts[0].details["pre_mood"] == 7.5 and alerts[0].details["session_id"] == sid
    _mood(client, care, start + timedelta(hours=49), 1)  # after the first 48 h
    assert len(_alerts(db, care["patient"]["id"])) == 1


def test_post_session_drop_exactly_three_and_fallback_pre(client, db, care):
    start = NOW - timedelta(hours=30)
    _mood(client, care, start - timedelta(hours=30), 2)  # outside [s-24h, s)
    _mood(client, care, start - timedelta(hours=5), 9)
    _mood(client, care, start - timedelta(hours=2), 6)  # the last before s: pre = 6
    _session(client, care, start)
    _mood(client, care, start + timedelta(hours=1), 4)  # drop 2
    assert _alerts(db, care["patient"]["id"]) == []
    _mood(client, care, start + timedelta(hours=2), 3)  # drop exactly 3
    assert len(_alerts(db, care["patient"]["id"])) == 1


def test_no_pre_means_no_drop_alert_and_next_session_owns_its_span(client, db, care):
    first = NOW - timedelta(hours=40)
    second = NOW - timedelta(hours=20)
    _session(client, care, first)  # no measurements before it: no pre, no alert
    _mood(client, care, first + timedelta(hours=2), 0)
    assert _alerts(db, care["patient"]["id"]) == []
    _mood(client, care, second - timedelta(hours=1), 9)
    _session(client, care, second)
    # 21 h after the first session, but inside the second's span: compared with its pre (9).
    _mood(client, care, second + timedelta(hours=1), 6)
    alerts = _alerts(db, care["patient"]["id"])
    assert len(alerts) == 1 and alerts[0].details["pre_mood"] == 9


def test_batch_entries_raise_drop_alerts_too(client, db, care):
    start = NOW - timedelta(hours=30)
    _mood(client, care, start - timedelta(hours=2), 8)
    _session(client, care, start)
    entries = [
        {"occurred_at": (start + timedelta(hours=h)).isoformat(), "mood": m}
        for h, m in ((3, 7), (6, 4), (9, 2))
    ]
    response = client.post(f"{care['mood']}/batch", json={"entries": entries}, headers=care["ph"])
    assert response.get_json()["created"] == 3
    assert len(_alerts(db, care["patient"]["id"])) == 2


def test_batch_item_with_a_bad_link_fails_alone(client, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    entries = [
        {
            "occurred_at": (start + timedelta(hours=1)).isoformat(),
            "mood": 5,
            "session_id": sid,
            "phase": "pre",
        },
        {
            "occurred_at": (start + timedelta(hours=2)).isoformat(),
            "mood": 5,
            "session_id": sid,
            "phase": "post",
        },
    ]
    body = client.post(
        f"{care['mood']}/batch", json={"entries": entries}, headers=care["ph"]
    ).get_json()
    assert [r["status"] for r in body["results"]] == [422, 201]
    assert "phase" in body["results"][0]["problem"]["errors"]
