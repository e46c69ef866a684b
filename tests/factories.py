"""Small factories that write rows directly, for tests of the analytics definitions."""

from __future__ import annotations

import uuid
from datetime import datetime

from models import MoodEntry, TreatmentSession
from models.accounts import Role, User
from models.assessments import Assessment
from models.instruments import band_of


def patient(db, zone: str = "UTC") -> User:
    email = f"{uuid.uuid4().hex}@example.org"
    user = User(
        email=email,
        email_key=email,
        role=Role.patient,
        display_name="P",
        timezone=zone,
        password_hash="unused",
    )
    db.add(user)
    db.flush()
    return user


def mood(db, who: User, at: str | datetime, value: int = 5, **extra) -> MoodEntry:
    instant = datetime.fromisoformat(at) if isinstance(at, str) else at
    entry = MoodEntry(
        patient_id=who.id, mood=value, fingerprint=uuid.uuid4().hex, change_seq=0, **extra
    )
    entry.set_occurred_at(instant)
    db.add(entry)
    db.flush()
    return entry


def phq9(db, who: User, at: str | datetime, total: int, **extra) -> Assessment:
    instant = datetime.fromisoformat(at) if isinstance(at, str) else at
    band = band_of("phq9", total)
    form = Assessment(
        patient_id=who.id,
        instrument="phq9",
        answers=[0] * 9,
        total=total,
        band=band.code if band else None,
        flags=[],
        instrument_version="1",
        scoring_version="1",
        ruleset_version="t",
        fingerprint=uuid.uuid4().hex,
        **extra,
    )
    form.set_occurred_at(instant)
    db.add(form)
    db.flush()
    return form


def session(db, who: User, start: str | datetime, status: str = "completed") -> TreatmentSession:
    instant = datetime.fromisoformat(start) if isinstance(start, str) else start
    record = TreatmentSession(
        patient_id=who.id,
        status=status,
        started_at=instant,
        utc_offset_minutes=int(instant.utcoffset().total_seconds() // 60),
        drug="ketamine",
        route="iv",
        dose_mg=35,
        weight_kg=70,
        setting="clinic",
        fingerprint=uuid.uuid4().hex,
    )
    db.add(record)
    db.flush()
    return record
