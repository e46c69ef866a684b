"""Races that only real commits show: concurrent identical creates and refresh reuse
(``committing``, tests/conftest.py)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from models import MoodEntry
from models.sync import SyncCounter
from tests.conftest import auth, register_patient


def test_fifty_concurrent_identical_creates_store_one_row(app, committing):
    client = app.test_client()
    patient = register_patient(client)
    committing.append(patient["email"])
    headers = auth(client, patient["email"])
    body = {
        "id": str(uuid.uuid4()),
        "mood": 4,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    keyed = {"mood": 5, "occurred_at": body["occurred_at"]}

    def post(i: int) -> int:
        c = app.test_client()
        if i % 2:
            return c.post(
                "/api/v1/patients/me/mood-entries", json=body, headers=headers
            ).status_code
        return c.post(
            "/api/v1/patients/me/mood-entries",
            json=keyed,
            headers={**headers, "Idempotency-Key": "race-key"},
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(post, range(100)))
    assert all(s in (200, 201) for s in statuses), statuses
    assert statuses.count(201) == 2  # one for the id, one for the key
    with app.extensions["moodtrack"].session_factory() as session:
        count = session.scalar(
            select(func.count())
            .select_from(MoodEntry)
            .where(MoodEntry.patient_id == uuid.UUID(patient["id"]))
        )
        seqs = session.scalars(
            select(MoodEntry.change_seq).where(MoodEntry.patient_id == uuid.UUID(patient["id"]))
        ).all()
        # Every losing replay gave its number back: the counter stands at the last one used.
        last = session.scalar(
            select(SyncCounter.last_seq).where(SyncCounter.patient_id == uuid.UUID(patient["id"]))
        )
    assert count == 2
    assert sorted(seqs) == [1, 2]
    assert last == 2


def test_concurrent_reuse_of_one_refresh_token_yields_one_new_pair(app, committing):
    client = app.test_client()
    patient = register_patient(client)
    committing.append(patient["email"])
    refresh = client.post(
        "/api/v1/auth/login", json={"email": patient["email"], "password": patient["password"]}
    ).get_json()["refresh_token"]

    def use(_: int) -> int:
        return (
            app.test_client()
            .post("/api/v1/auth/refresh", json={"refresh_token": refresh})
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(use, range(8)))
    # Exactly one use wins: the conditional UPDATE lets one claim the token, and every other
    # use waits for its commit, finds it rotated and revokes the family (401). None winning
    # would lock the patient out of a token they held legitimately.
    assert statuses.count(200) == 1 and statuses.count(401) == 7, statuses
