"""Trend, course and cohort latency on a realistic data set, beside the raw SQL floor.

    python -m bench.trends                       # SQLite (a temporary file)
    python -m bench.trends --database-url postgresql://postgres@127.0.0.1:5432/bench

Seeds 1,000 patients with two years of daily mood, a PHQ-9 every 14 days and 12
completed sessions each, all linked to one clinician; then times requests through the
whole app (token, access check, SQL, audit record, JSON) with Flask's test client, in
interleaved rounds beside the raw SQL aggregate of the same trend (the floor), and prints
median and p95 of each and the trend's distance from the goal (3x the floor + a few ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bench.common import bench_app, describe, fresh_database
from models import CareLink, MoodEntry, TreatmentSession, User
from models.accounts import Role
from models.assessments import Assessment
from models.organisations import MemberRole, Membership, Organisation
from models.passwords import Argon2Params, Passwords

DAYS = 730
FLOOR = "raw SQL daily aggregate (floor)"
TREND = "GET trends mood, 2 years by day"


def seed(app: Any, patients: int) -> tuple[str, list[uuid.UUID]]:
    """Write the data set with bulk inserts; returns the clinician's email and patient ids."""
    engine = app.extensions["moodtrack"].engine
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    first_day = now - timedelta(days=DAYS)
    hashed = Passwords(Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)).hash(
        "benchmark pass 2026"
    )
    clinician = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(patients)]
    users = [
        {
            "id": clinician,
            "email": "doc@clinic.example",
            "email_key": "doc@clinic.example",
            "role": Role.clinician,
            "display_name": "Doc",
            "timezone": "UTC",
            "password_hash": hashed,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
    ]
    users += [
        {
            "id": pid,
            "email": f"p{i}@bench.org",
            "email_key": f"p{i}@bench.org",
            "role": Role.patient,
            "display_name": f"Patient {i}",
            "timezone": "UTC",
            "password_hash": hashed,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for i, pid in enumerate(ids)
    ]
    common = {"created_at": now, "updated_at": now, "version": 1, "utc_offset_minutes": 0}
    clinic = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        conn.execute(
            insert(Organisation), [{"id": clinic, "name": "Bench clinic", "created_at": now}]
        )
        conn.execute(
            insert(Membership),
            [
                {
                    "id": uuid.uuid4(),
                    "user_id": clinician,
                    "organisation_id": clinic,
                    "role": MemberRole.clinician.value,
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            insert(CareLink),
            [
                {
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "clinician_id": clinician,
                    "organisation_id": clinic,
                    "created_at": now,
                }
                for pid in ids
            ],
        )
    for n, pid in enumerate(ids):
        moods, forms, sessions = [], [], []
        for day in range(DAYS):
            at = first_day + timedelta(days=day, hours=rng.randint(7, 22))
            moods.append(
                {
                    **common,
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "occurred_at": at,
                    "local_date": at.date(),
                    "mood": rng.randint(0, 10),
                    "anxiety": rng.randint(0, 10),
                    "fingerprint": "b" * 64,
                    "change_seq": day + 1,
                }
            )
        for day in range(0, DAYS, 14):
            at = first_day + timedelta(days=day, hours=9)
            forms.append(
                {
                    **common,
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "occurred_at": at,
                    "local_date": at.date(),
                    "instrument": "phq9",
                    "answers": [1] * 9,
                    "total": rng.randint(0, 27),
                    "band": None,
                    "flags": [],
                    "instrument_version": "1",
                    "scoring_version": "1",
                    "ruleset_version": "b",
                    "fingerprint": "b" * 64,
                }
            )
        for k in range(12):
            at = first_day + timedelta(days=200 + 3 * k, hours=10)
            sessions.append(
                {
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                    "utc_offset_minutes": 0,
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "status": "completed",
                    "started_at": at,
                    "drug": "ketamine",
                    "route": "iv",
                    "dose_mg": 35.0,
                    "weight_kg": 70.0,
                    "setting": "clinic",
                    "concomitant_medications": [],
                    "adverse_events": [],
                    "fingerprint": "b" * 64,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(MoodEntry), moods)
            conn.execute(insert(Assessment), forms)
            conn.execute(insert(TreatmentSession), sessions)
        if n % 100 == 99:
            print(f"  seeded {n + 1} patients", flush=True)
    return "doc@clinic.example", ids


def main() -> None:
    """Seed, then time each request kind and print median and p95."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    app = bench_app(url)
    started = time.perf_counter()
    email, ids = seed(app, args.patients)
    print(
        f"seeded {args.patients} patients in {time.perf_counter() - started:.0f} s "
        f"({args.patients * DAYS} mood entries)"
    )
    engine = app.extensions["moodtrack"].engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    client = app.test_client()
    token = client.post(
        "/api/v1/auth/login", json={"email": email, "password": "benchmark pass 2026"}
    )
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    rng = random.Random(11)

    def floor(pid: uuid.UUID) -> None:
        with engine.connect() as conn:
            conn.execute(
                select(
                    MoodEntry.local_date,
                    func.avg(MoodEntry.mood),
                    func.count(),
                    func.min(MoodEntry.mood),
                    func.max(MoodEntry.mood),
                )
                .where(MoodEntry.patient_id == pid, MoodEntry.deleted_at.is_(None))
                .group_by(MoodEntry.local_date)
                .order_by(MoodEntry.local_date)
            ).all()

    def get(path: str) -> Callable[[uuid.UUID], None]:
        def call(pid: uuid.UUID) -> None:
            response = client.get(path.format(pid=pid), headers=headers)
            assert response.status_code == 200, response.get_json()

        return call

    kinds: dict[str, Callable[[uuid.UUID], None]] = {
        FLOOR: floor,
        TREND: get("/api/v1/patients/{pid}/trends?metric=mood"),
        "GET trends phq9 by month": get("/api/v1/patients/{pid}/trends?metric=phq9&bucket=month"),
        "GET course (12 sessions)": get("/api/v1/patients/{pid}/course"),
        "GET cohort page of 100": get("/api/v1/patients?limit=100"),
    }
    for kind in kinds.values():  # warm-up: statement caches, connections, pseudonyms
        kind(ids[0])
    # Interleaved rounds, one patient per round for every kind: whatever else the machine
    # is doing weighs on the floor and the requests alike, so their ratio holds.
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.repeat):
        pid = rng.choice(ids)
        for name, kind in kinds.items():
            started = time.perf_counter()
            kind(pid)
            samples[name].append((time.perf_counter() - started) * 1000)
    print(f"database: {engine.dialect.name}; {args.repeat} interleaved rounds")
    for name, values in samples.items():
        print(f"  {name:34s} {describe(values)}")
    floor_ms, trend_ms = statistics.median(samples[FLOOR]), statistics.median(samples[TREND])
    print(
        f"  trend = {trend_ms / floor_ms:.1f} x floor; "
        f"trend - 3 x floor = {trend_ms - 3 * floor_ms:.1f} ms (goal: a few ms)"
    )


if __name__ == "__main__":
    main()
