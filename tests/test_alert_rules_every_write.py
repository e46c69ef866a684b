"""Every write that can make an alert rule true raises it (issue 11 §1), once.

Each flow below stored data meeting a rule without an alert before the rules were
re-evaluated on every write: the session recorded after its check-ins, an entry edited
down, a back-dated entry, a moved or deleted session, a deleted or back-dated PHQ-9.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

import models.alerts
from models.alerts import Alert
from models.assessments import Assessment
from models.events import Event
from models.mood import MoodEntry
from tests.conftest import auth, link, make_staff, register_patient

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    return {
        "id": patient["id"],
        "ph": ph,
        "ch": ch,
        "sessions": f"/api/v1/patients/{patient['id']}/sessions",
        "mood": "/api/v1/patients/me/mood-entries",
        "forms": "/api/v1/patients/me/assessments",
    }


def _session(client, care, start, status="completed"):
    body = {
        "status": status,
        "started_at": start.isoformat(),
        "drug": "ketamine",
        "route": "iv",
        "weight_kg": 70,
        "setting": "clinic",
    }
    if status == "completed":
        body["dose_mg"] = 35
    response = client.post(care["sessions"], json=body, headers=care["ch"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _patch_session(client, care, sid, changes):
    url = f"{care['sessions']}/{sid}"
    etag = client.get(url, headers=care["ch"]).headers["ETag"]
    response = client.patch(url, json=changes, headers={**care["ch"], "If-Match": etag})
    assert response.status_code == 200, response.get_json()


def _mood(client, care, at, mood, **extra):
    response = client.post(
        care["mood"],
        json={"occurred_at": at.isoformat(), "mood": mood, **extra},
        headers=care["ph"],
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _phq9(client, care, total, at):
    answers = [3] * (total // 3) + ([total % 3] if total % 3 else [])
    answers += [0] * (9 - len(answers))
    response = client.post(
        care["forms"],
        json={"instrument": "phq9", "answers": answers, "occurred_at": at.isoformat()},
        headers=care["ph"],
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _alerts(db, care, rule):
    return db.scalars(
        select(Alert)
        .where(Alert.patient_id == uuid.UUID(care["id"]), Alert.rule == rule)
        .order_by(Alert.created_at)
    ).all()


def _drops(db, care):
    return [
        (str(a.source_id), a.details["session_id"]) for a in _alerts(db, care, "post_session_drop")
    ]


# ---------------------------------------------------------------- post_session_drop


def test_session_recorded_completed_after_the_phone_synced_its_checkins(client, db, care):
    start = NOW - timedelta(hours=30)
    _mood(client, care, start - timedelta(hours=2), 8)  # the pre value, once a session exists
    low = _mood(client, care, start + timedelta(hours=5), 4)
    assert _drops(db, care) == []
    sid = _session(client, care, start)
    assert _drops(db, care) == [(low, sid)]


def test_scheduled_session_patched_to_completed_after_linked_checkins(client, db, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start, status="scheduled")
    _mood(client, care, start - timedelta(hours=1), 9, session_id=sid, phase="pre")
    low = _mood(client, care, start + timedelta(hours=3), 5, session_id=sid, phase="post")
    assert _drops(db, care) == []  # a scheduled session never counts
    _patch_session(client, care, sid, {"status": "completed", "dose_mg": 35})
    assert _drops(db, care) == [(low, sid)]
    alert = _alerts(db, care, "post_session_drop")[0]
    assert alert.details["pre_mood"] == 9 and alert.details["mood"] == 5


def test_post_entry_edited_down_below_the_threshold(client, db, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    _mood(client, care, start - timedelta(hours=1), 8, session_id=sid, phase="pre")
    post = _mood(client, care, start + timedelta(hours=6), 7, session_id=sid, phase="post")
    assert _drops(db, care) == []
    url = f"{care['mood']}/{post}"
    edited = client.patch(url, json={"mood": 5}, headers={**care["ph"], "If-Match": '"1"'})
    assert edited.status_code == 200
    assert _drops(db, care) == [(post, sid)]
    # Edited again, still low: the same occasion, no second alert.
    client.patch(url, json={"mood": 4}, headers={**care["ph"], "If-Match": '"2"'})
    assert _drops(db, care) == [(post, sid)]


def test_back_dated_pre_entry_makes_an_existing_low_entry_a_drop(client, db, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    low = _mood(client, care, start + timedelta(hours=10), 2)
    assert _drops(db, care) == []  # no pre value yet
    _mood(client, care, start - timedelta(hours=3), 8)  # synced late, before the session
    assert _drops(db, care) == [(low, sid)]


def test_entry_moved_into_the_first_hours_of_a_session(client, db, care):
    start = NOW - timedelta(hours=80)
    sid = _session(client, care, start)
    _mood(client, care, start - timedelta(hours=1), 8)
    late = _mood(client, care, start + timedelta(hours=60), 3)  # after the first 48 h
    assert _drops(db, care) == []
    moved = client.patch(
        f"{care['mood']}/{late}",
        json={"occurred_at": (start + timedelta(hours=30)).isoformat()},
        headers={**care["ph"], "If-Match": '"1"'},
    )
    assert moved.status_code == 200
    assert _drops(db, care) == [(late, sid)]


def test_moved_started_at_puts_an_existing_low_entry_inside_48_hours(client, db, care):
    first_start = NOW - timedelta(hours=90)
    sid = _session(client, care, first_start)
    _mood(client, care, first_start + timedelta(hours=30), 8)
    low = _mood(client, care, first_start + timedelta(hours=60), 2)
    assert _drops(db, care) == []  # no pre value before the session as recorded
    # The session really started 40 h later: the 8 is now its pre value, the 2 is 20 h in.
    _patch_session(
        client, care, sid, {"started_at": (first_start + timedelta(hours=40)).isoformat()}
    )
    assert _drops(db, care) == [(low, sid)]


def test_deleted_session_hands_its_span_to_the_previous_one(client, db, care):
    s1 = NOW - timedelta(hours=45)
    s2 = s1 + timedelta(hours=20)
    first = _session(client, care, s1)
    _mood(client, care, s1 - timedelta(hours=1), 9)  # pre of s1
    second = _session(client, care, s2)
    _mood(client, care, s2 - timedelta(hours=1), 7)  # pre of s2 (and -2 in s1's span)
    low = _mood(client, care, s2 + timedelta(hours=10), 5)  # -2 from s2's pre
    assert _drops(db, care) == []
    url = f"{care['sessions']}/{second}"
    etag = client.get(url, headers=care["ch"]).headers["ETag"]
    assert client.delete(url, headers={**care["ch"], "If-Match": etag}).status_code == 204
    # 30 h into s1's span now, 4 below its pre value of 9.
    assert _drops(db, care) == [(low, first)]


def test_batch_sync_then_session_raises_each_low_entry_once(client, db, care):
    start = NOW - timedelta(hours=40)
    entries = [
        {"occurred_at": (start + timedelta(hours=h)).isoformat(), "mood": m}
        for h, m in ((-2, 9), (3, 5), (8, 6), (20, 8))
    ]
    response = client.post(f"{care['mood']}/batch", json={"entries": entries}, headers=care["ph"])
    assert response.get_json()["created"] == 4
    sid = _session(client, care, start)
    assert sorted(s for _, s in _drops(db, care)) == [sid, sid]
    # A write nearby re-evaluates the rule: the same two occasions, no new alerts.
    _mood(client, care, start + timedelta(hours=21), 8)
    assert len(_drops(db, care)) == 2


# ---------------------------------------------------------------- worsening


def test_deleting_the_middle_phq9_makes_the_next_one_a_worsening(client, db, care):
    _phq9(client, care, 5, NOW - timedelta(days=28))
    middle = _phq9(client, care, 8, NOW - timedelta(days=14))
    last = _phq9(client, care, 10, NOW - timedelta(days=1))
    assert _alerts(db, care, "worsening") == []
    url = f"{care['forms']}/{middle}"
    assert client.delete(url, headers={**care["ph"], "If-Match": '"1"'}).status_code == 204
    alerts = _alerts(db, care, "worsening")
    assert [str(a.source_id) for a in alerts] == [last]
    assert (alerts[0].details["previous_total"], alerts[0].details["total"]) == (5, 10)


def test_back_dated_phq9_makes_the_later_one_a_worsening(client, db, care):
    later = _phq9(client, care, 12, NOW - timedelta(days=2))
    assert _alerts(db, care, "worsening") == []
    _phq9(client, care, 6, NOW - timedelta(days=16))  # answered on paper, entered late
    alerts = _alerts(db, care, "worsening")
    assert [str(a.source_id) for a in alerts] == [later]
    assert alerts[0].details["reasons"] == ["increase"]


# ---------------------------------------------------------------- the outbox


def _events(db, care):
    return db.scalars(
        select(Event).where(Event.patient_id == uuid.UUID(care["id"])).order_by(Event.created_at)
    ).all()


def test_each_alert_writes_one_event_with_ids_and_codes_only(client, db, care):
    start = NOW - timedelta(hours=30)
    _mood(client, care, start - timedelta(hours=2), 8, note="felt awful, do not log me")
    low = _mood(client, care, start + timedelta(hours=5), 4)
    sid = _session(client, care, start)
    _mood(client, care, start + timedelta(hours=6), 7)  # re-evaluation: nothing new
    events = _events(db, care)
    alert = _alerts(db, care, "post_session_drop")[0]
    assert [e.type for e in events] == ["alert.raised"]
    assert events[0].payload == {
        "alert_id": str(alert.id),
        "patient_id": care["id"],
        "rule": "post_session_drop",
        "priority": "medium",
        "raised_at": alert.created_at.isoformat(),
    }
    assert low not in str(events[0].payload) and sid not in str(events[0].payload)


def test_an_outbox_failure_stores_neither_the_form_nor_its_alert(client, db, care, monkeypatch):
    def broken(**_kwargs):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(models.alerts, "emit_event", broken)
    answers = [1, 1, 1, 1, 1, 1, 1, 1, 2]
    response = client.post(
        care["forms"],
        json={"instrument": "phq9", "answers": answers, "occurred_at": NOW.isoformat()},
        headers=care["ph"],
    )
    assert response.status_code == 500
    pid = uuid.UUID(care["id"])
    for model in (Assessment, Alert, Event):
        assert db.scalar(select(func.count()).where(model.patient_id == pid)) == 0


def test_a_mood_entry_and_its_alert_commit_together(client, db, care, monkeypatch):
    start = NOW - timedelta(hours=30)
    _session(client, care, start)
    _mood(client, care, start - timedelta(hours=2), 8)

    def broken(**_kwargs):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(models.alerts, "emit_event", broken)
    response = client.post(
        care["mood"],
        json={"occurred_at": (start + timedelta(hours=4)).isoformat(), "mood": 1},
        headers=care["ph"],
    )
    assert response.status_code == 500
    pid = uuid.UUID(care["id"])
    assert db.scalar(select(func.count()).where(MoodEntry.patient_id == pid)) == 1
    assert db.scalar(select(func.count()).where(Alert.patient_id == pid)) == 0


# ---------------------------------------------------------------- more writes that count


def test_deleting_the_last_pre_entry_makes_an_earlier_one_the_pre_value(client, db, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    _mood(client, care, start - timedelta(hours=10), 9)
    last = _mood(client, care, start - timedelta(hours=1), 5)  # the pre value: 5
    low = _mood(client, care, start + timedelta(hours=5), 4)  # only 1 below
    assert _drops(db, care) == []
    gone = client.delete(f"{care['mood']}/{last}", headers={**care["ph"], "If-Match": '"1"'})
    assert gone.status_code == 204
    assert _drops(db, care) == [(low, sid)]  # 5 below the earlier 9


def test_a_pre_check_in_moved_to_another_session(client, db, care):
    s1 = NOW - timedelta(hours=60)
    s2 = NOW - timedelta(hours=20)
    first = _session(client, care, s1)
    second = _session(client, care, s2)
    pre = _mood(client, care, s1 - timedelta(hours=1), 9, session_id=first, phase="pre")
    low = _mood(client, care, s2 + timedelta(hours=3), 4)
    assert _drops(db, care) == []  # s2 has no pre value
    moved = client.patch(
        f"{care['mood']}/{pre}",
        json={"session_id": second},
        headers={**care["ph"], "If-Match": '"1"'},
    )
    assert moved.status_code == 200
    assert _drops(db, care) == [(low, second)]


def test_moving_the_next_session_later_grows_the_span_of_the_one_before(client, db, care):
    s1 = NOW - timedelta(hours=45)
    first = _session(client, care, s1)
    _mood(client, care, s1 - timedelta(hours=1), 9)
    second = _session(client, care, s1 + timedelta(hours=10))
    _mood(client, care, s1 + timedelta(hours=9), 7)  # s2's pre value; 2 below s1's
    low = _mood(client, care, s1 + timedelta(hours=20), 6)  # in s2's span: 1 below 7
    assert _drops(db, care) == []
    _patch_session(client, care, second, {"started_at": (s1 + timedelta(hours=30)).isoformat()})
    # Both entries now fall in s1's first 48 hours; the 6 is 3 below s1's pre value of 9.
    assert (low, first) in _drops(db, care)


def test_deleting_the_first_severe_phq9_makes_the_next_one_enter_severe(client, db, care):
    first = _phq9(client, care, 22, NOW - timedelta(days=20))
    second = _phq9(client, care, 21, NOW - timedelta(days=6))
    assert [str(a.source_id) for a in _alerts(db, care, "worsening")] == [first]
    url = f"{care['forms']}/{first}"
    assert client.delete(url, headers={**care["ph"], "If-Match": '"1"'}).status_code == 204
    alerts = _alerts(db, care, "worsening")
    assert [str(a.source_id) for a in alerts] == [first, second]
    assert alerts[1].details["reasons"] == ["entered_severe"]


def test_a_batch_mixing_a_replay_and_a_new_low_entry(client, db, care):
    start = NOW - timedelta(hours=30)
    sid = _session(client, care, start)
    replayed = {
        "id": str(uuid.uuid4()),
        "occurred_at": (start - timedelta(hours=1)).isoformat(),
        "mood": 8,
    }
    assert client.post(care["mood"], json=replayed, headers=care["ph"]).status_code == 201
    fresh = {"occurred_at": (start + timedelta(hours=6)).isoformat(), "mood": 4}
    response = client.post(
        f"{care['mood']}/batch", json={"entries": [replayed, fresh]}, headers=care["ph"]
    )
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [200, 201]
    assert _drops(db, care) == [(results[1]["entry"]["id"], sid)]


def test_candidate_statements_are_kept_for_single_writes_only():
    """A batch has an instant per entry: a statement kept per batch size would let clients
    grow the cache without bound (hundreds of MiB per worker)."""
    from models.alert_rules import (
        CACHED_INSTANTS,
        _cached_candidate_statement,
        _candidate_statement,
    )

    assert _candidate_statement(1, False) is _candidate_statement(1, False)
    kept = _cached_candidate_statement.cache_info().currsize
    _candidate_statement(CACHED_INSTANTS + 1, False)
    _candidate_statement(200, True)
    assert _cached_candidate_statement.cache_info().currsize == kept
