"""The benchmark's floors do the work bench.throughput says they do, and no more."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

FIXED_WORK = "/insert-with-fixed-work"


@pytest.fixture
def floors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, str]]:
    """bench.write_floor imported afresh on an empty SQLite file, limits counted in memory."""
    url = f"sqlite:///{tmp_path / 'floor.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MOODTRACK_RATELIMIT_STORAGE_URL", "memory://")
    monkeypatch.setenv("MOODTRACK_RATELIMIT_WRITES_PER_USER", "2/minute")
    monkeypatch.delitem(sys.modules, "bench.write_floor", raising=False)
    module = importlib.import_module("bench.write_floor")
    yield module, url
    module.engine.dispose()
    module.reader.dispose()
    monkeypatch.delitem(sys.modules, "bench.write_floor", raising=False)


def counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM bench_write_floor")).scalar_one()
        audits = connection.execute(
            text("SELECT count(*) FROM bench_write_floor_audit")
        ).scalar_one()
    engine.dispose()
    return rows, audits


def test_the_fixed_work_floor_stores_a_row_and_its_audit_row_and_counts_the_caller(floors):
    module, url = floors
    client = module.app.test_client()
    caller = {"Authorization": "Bearer one"}

    def write(mood: int, headers: dict[str, str]) -> int:
        return client.post(FIXED_WORK, json={"mood": mood}, headers=headers).status_code

    assert counts(url) == (1, 0)  # the row GET /read reads
    answer = client.post(FIXED_WORK, json={"mood": 5}, headers=caller)
    assert answer.status_code == 200
    stored = uuid.UUID(answer.get_json()["id"])
    assert counts(url) == (2, 1)
    engine = create_engine(url)
    with engine.connect() as connection:
        audit = connection.execute(
            text("SELECT actor, resource_id FROM bench_write_floor_audit")
        ).one()
    engine.dispose()
    # The audit row names the caller that was read and the row that was stored.
    assert uuid.UUID(audit.actor) == module.READ_ID
    assert uuid.UUID(audit.resource_id) == stored
    # The write limit (2/minute here) is counted per caller, as the API counts writes.
    assert write(4, caller) == 200
    assert write(3, caller) == 429
    assert counts(url) == (3, 2)
    assert write(3, {"Authorization": "Bearer two"}) == 200


def test_the_plain_floor_writes_no_audit_row(floors):
    module, url = floors
    client = module.app.test_client()
    assert client.post("/insert", json={"mood": 5}).status_code == 200
    assert counts(url) == (2, 0)
    assert client.get("/read").get_json()["n"] == 5
