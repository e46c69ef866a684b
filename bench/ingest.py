"""Mood-entry ingest rates: single POSTs and 500-entry offline batches, in process.

    python -m bench.ingest                       # SQLite (a temporary file)
    python -m bench.ingest --database-url postgresql://postgres@127.0.0.1:5432/bench

Requests go through the whole app (token check, validation, insert, audit, commit) via
Flask's test client, so the figures are the service's own cost without HTTP parsing.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime, timedelta

from bench.common import bench_app, describe, fresh_database, sign_up, timed


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    app = bench_app(url)
    client = app.test_client()
    email = "runner@example.org"
    sign_up(app, client, email, "benchmark pass 2026")
    token = client.post(
        "/api/v1/auth/login", json={"email": email, "password": "benchmark pass 2026"}
    )
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    url_path = "/api/v1/patients/me/mood-entries"
    start = datetime.now(UTC) - timedelta(days=300)
    counter = iter(range(10**9))

    def single() -> None:
        i = next(counter)
        body = {
            "id": str(uuid.uuid4()),
            "mood": i % 11,
            "occurred_at": (start + timedelta(minutes=i)).isoformat(),
        }
        assert client.post(url_path, json=body, headers=headers).status_code == 201

    def batch() -> None:
        entries = []
        for _ in range(500):
            i = next(counter)
            entries.append(
                {
                    "id": str(uuid.uuid4()),
                    "mood": i % 11,
                    "note": "batch",
                    "occurred_at": (start + timedelta(minutes=i)).isoformat(),
                }
            )
        body = client.post(f"{url_path}/batch", json={"entries": entries}, headers=headers)
        assert body.get_json()["created"] == 500

    single()  # warm up
    singles = timed(single, args.singles)
    batches = timed(batch, args.batches)
    kind = url.split(":", 1)[0]
    print(f"database: {kind}")
    print(
        f"single entry POST x{args.singles}: {1000 / (sum(singles) / len(singles)):8.0f} "
        f"entries/s   {describe(singles)}"
    )
    per_batch = sum(batches) / len(batches)
    print(
        f"500-entry batch  x{args.batches}:   {500 * 1000 / per_batch:8.0f} entries/s   "
        f"{describe(batches)} per batch"
    )


if __name__ == "__main__":
    main()
