"""The phone's due list: local days across daylight-saving changes, session windows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models import MoodEntry, TreatmentSession
from models.accounts import Role, User
from models.due import due_items, local_day_bounds
from models.records import fingerprint


def _patient(db, zone: str) -> User:
    user = User(
        email=f"{uuid.uuid4().hex}@x.org",
        email_key=f"{uuid.uuid4().hex}@x.org",
        role=Role.patient,
        display_name="P",
        timezone=zone,
        password_hash="x",
    )
    db.add(user)
    db.flush()
    return user


def _mood(db, patient, at: datetime) -> None:
    entry = MoodEntry(
        patient_id=patient.id, mood=5, fingerprint=fingerprint({"a": str(at)}), change_seq=1
    )
    entry.set_occurred_at(at)
    db.add(entry)
    db.flush()


def _session(db, patient, start: datetime, status: str) -> TreatmentSession:
    session = TreatmentSession(
        patient_id=patient.id,
        status=status,
        started_at=start,
        utc_offset_minutes=0,
        drug="ketamine",
        route="iv",
        dose_mg=35 if status == "completed" else None,
        weight_kg=70,
        setting="clinic",
        fingerprint=uuid.uuid4().hex,
    )
    db.add(session)
    db.flush()
    return session


def _none(_: str):
    return None


@pytest.mark.parametrize(
    ("zone", "dst_day", "hours"),
    [
        ("America/New_York", "2026-03-08", 23),  # clocks go forward
        ("America/New_York", "2026-11-01", 25),  # clocks go back
        ("Europe/London", "2026-03-29", 23),
        ("Europe/London", "2026-10-25", 25),
    ],
)
def test_daily_window_is_the_local_day_across_dst(db, zone, dst_day, hours):
    tz = ZoneInfo(zone)
    noon = datetime.fromisoformat(f"{dst_day}T12:00:00").replace(tzinfo=tz)
    start, end = local_day_bounds(noon, tz)
    assert (end - start).total_seconds() == hours * 3600
    assert start.astimezone(tz).hour == 0 and end.astimezone(tz).hour == 0
    patient = _patient(db, zone)
    # Logged at 00:30 local on the DST day: counts for that day, whatever the UTC date.
    _mood(db, patient, datetime.fromisoformat(f"{dst_day}T00:30:00").replace(tzinfo=tz))
    items = due_items(db=db, patient=patient, now=noon.astimezone(UTC), last_questionnaire=_none)
    today = next(i for i in items if i.kind == "daily_mood")
    assert today.window_start == start and today.window_end == end and today.done
    tomorrow = [i for i in items if i.kind == "daily_mood"][1]
    assert tomorrow.window_start == end and not tomorrow.done


def test_late_evening_entry_counts_for_that_local_day_not_the_utc_day(db):
    tz = ZoneInfo("America/Los_Angeles")
    patient = _patient(db, "America/Los_Angeles")
    evening = datetime(2026, 11, 26, 23, 30, tzinfo=tz)  # 07:30 UTC on the 27th
    _mood(db, patient, evening)
    items = due_items(
        db=db, patient=patient, now=evening + timedelta(minutes=10), last_questionnaire=_none
    )
    assert items[0].kind == "daily_mood" and items[0].done
    next_morning = due_items(
        db=db, patient=patient, now=evening + timedelta(hours=9), last_questionnaire=_none
    )
    assert next(i for i in next_morning if i.kind == "daily_mood").done is False


def test_session_windows_pre_and_post(db):
    tz = ZoneInfo("Pacific/Auckland")  # UTC+13 in November
    patient = _patient(db, "Pacific/Auckland")
    now = datetime(2026, 11, 20, 9, 0, tzinfo=tz).astimezone(UTC)
    scheduled = _session(db, patient, now + timedelta(hours=10), "scheduled")
    done = _session(db, patient, now - timedelta(hours=3), "completed")
    _mood(db, patient, now - timedelta(minutes=30))  # inside done's +2h..+4h window
    items = due_items(db=db, patient=patient, now=now, last_questionnaire=_none)
    by_kind = {(i.kind, i.session_id): i for i in items}
    pre = by_kind[("pre_session", scheduled.id)]
    assert (pre.window_start, pre.window_end) == (
        scheduled.started_at - timedelta(hours=24),
        scheduled.started_at,
    )
    assert pre.done is True  # the entry 30 minutes ago is within 24 h before the session
    acute = by_kind[("post_session_4h", done.id)]
    assert acute.done is True
    assert acute.window_end == done.started_at + timedelta(hours=4)
    day1 = by_kind[("post_session_24h", done.id)]
    assert (day1.window_start, day1.window_end) == (
        done.started_at + timedelta(hours=12),
        done.started_at + timedelta(hours=36),
    )
    assert day1.done is False
    day7 = by_kind[("post_session_7d", done.id)]
    assert day7.window_start == done.started_at + timedelta(days=6)
    assert [i.window_start for i in items] == sorted(i.window_start for i in items)


def test_expired_and_cancelled_windows_are_left_out(db):
    patient = _patient(db, "UTC")
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    old = _session(db, patient, now - timedelta(days=9), "completed")
    cancelled = _session(db, patient, now + timedelta(hours=5), "cancelled")
    items = due_items(db=db, patient=patient, now=now, last_questionnaire=_none)
    assert all(i.session_id not in (old.id, cancelled.id) for i in items)


def test_phq9_due_after_fourteen_days(db):
    patient = _patient(db, "UTC")
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    never = due_items(db=db, patient=patient, now=now, last_questionnaire=_none)
    phq = [i for i in never if i.instrument == "phq9"]
    assert len(phq) == 1 and phq[0].window_start <= now < phq[0].window_end
    recent = due_items(
        db=db, patient=patient, now=now, last_questionnaire=lambda code: now - timedelta(days=10)
    )
    phq = [i for i in recent if i.instrument == "phq9"]
    assert phq[0].window_start == now + timedelta(days=4)  # next one, not due yet
    stale = due_items(
        db=db, patient=patient, now=now, last_questionnaire=lambda code: now - timedelta(days=14)
    )
    assert next(i for i in stale if i.instrument == "phq9").window_start <= now


def test_due_over_http_for_the_patient_only(app, client):
    from tests.conftest import auth, link, make_staff, register_patient

    patient = register_patient(client, timezone="Pacific/Auckland")
    ph = auth(client, patient["email"])
    response = client.get("/api/v1/patients/me/due", headers=ph)
    assert response.status_code == 200
    body = response.get_json()
    assert body["timezone"] == "Pacific/Auckland"
    kinds = [i["kind"] for i in body["items"]]
    assert kinds.count("daily_mood") == 2 and "questionnaire" in kinds
    now = datetime.now(UTC)
    client.post(
        "/api/v1/patients/me/mood-entries",
        json={"occurred_at": now.astimezone(ZoneInfo("Pacific/Auckland")).isoformat(), "mood": 6},
        headers=ph,
    )
    today = client.get("/api/v1/patients/me/due", headers=ph).get_json()["items"]
    assert next(i for i in today if i["kind"] == "daily_mood")["done"] is True
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    assert client.get(f"/api/v1/patients/{patient['id']}/due", headers=ch).status_code == 403
    assert client.get("/api/v1/patients/me/due").status_code == 401
