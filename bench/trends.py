"""Trend, course and cohort latency on a realistic data set, beside the raw SQL floor.

    python -m bench.trends                       # SQLite (a temporary file)
    python -m bench.trends --database-url postgresql://postgres@127.0.0.1:5432/bench

Seeds 1,000 patients with two years of daily mood, a PHQ-9 every 14 days and 12
completed sessions each, all linked to one clinician; then times requests through the
whole app (token, access check, SQL, audit record, JSON) with Flask's test client.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bench.common import bench_app, describe, fresh_database, timed
from models import CareLink, MoodEntry, TreatmentSession, User
from models.accounts import Role
from models.assessments import Assessment
from models.passwords import Argon2Params, Passwords

DAYS = 730


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
            "failed_logins": 0,
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
            "failed_logins": 0,
        }
        for i, pid in enumerate(ids)
    ]
    common = {"created_at": now, "updated_at": now, "version": 1, "utc_offset_minutes": 0}
    with engine.begin() as conn:
        conn.execute(insert(User), users)
        conn.execute(
            insert(CareLink),
            [
                {
                    "id": uuid.uuid4(),
                    "patient_id": pid,
                    "clinician_id": clinician,
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
    parser.add_argument("--repeat", type=int, default=50)
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

    def floor() -> None:
        pid = rng.choice(ids)
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

    def get(path: str) -> Any:
        def call() -> None:
            pid = rng.choice(ids)
            response = client.get(path.format(pid=pid), headers=headers)
            assert response.status_code == 200, response.get_json()

        return call

    print(f"database: {engine.dialect.name}; {args.repeat} requests each")
    rows = {
        "raw SQL daily aggregate (floor)": timed(floor, args.repeat),
        "GET trends mood, 2 years by day": timed(
            get("/api/v1/patients/{pid}/trends?metric=mood"), args.repeat
        ),
        "GET trends phq9 by month": timed(
            get("/api/v1/patients/{pid}/trends?metric=phq9&bucket=month"), args.repeat
        ),
        "GET course (12 sessions)": timed(get("/api/v1/patients/{pid}/course"), args.repeat),
        "GET cohort page of 100": timed(get("/api/v1/patients?limit=100"), args.repeat),
    }
    for name, samples in rows.items():
        print(f"  {name:34s} {describe(samples)}")


if __name__ == "__main__":
    main()
