"""The engine's connection care: a pooled connection idle for a while is pinged (and replaced
if dead) before use, one in steady use is not; a forked child (gunicorn --preload's workers)
never uses a connection its parent opened. On SQLite and on TEST_DATABASE_URL alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import api.db
from api.db import make_engine


@pytest.fixture
def engine(database_url: str) -> Any:
    made = make_engine(database_url)
    yield made
    made.dispose()


def _kill_pooled_connection(engine: Any) -> None:
    """Close the pooled connection's DBAPI connection under the pool's feet, once it is back
    in the pool (as a database restart or a dropped socket would)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        raw = connection.connection.dbapi_connection
    assert engine.pool.checkedin() == 1
    raw.close()


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(engine, monkeypatch):
    _kill_pooled_connection(engine)
    monkeypatch.setattr(api.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 41 + 1")).scalar() == 42


def test_a_connection_in_steady_use_is_not_pinged(engine, monkeypatch):
    """The counterpart: without the idle ping the dead connection reaches the caller, so the
    test above shows the ping at work (and a busy pool pays no round trip for it)."""
    _kill_pooled_connection(engine)
    monkeypatch.setattr(api.db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(DBAPIError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    # SQLAlchemy's disconnect handling then retires the pool: the next use connects afresh.
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


FORK_CHECK = """
import os, sys
from sqlalchemy import text
from api.db import make_engine

engine = make_engine(sys.argv[1])
with engine.connect() as connection:
    connection.execute(text("SELECT 1"))
assert engine.pool.checkedin() == 1
child = os.fork()
if child == 0:
    os._exit(0 if engine.pool.checkedin() == 0 else 3)
_, status = os.waitpid(child, 0)
assert engine.pool.checkedin() == 1  # the parent keeps its own
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _fork_in_a_fresh_interpreter(script: str, database_url: str) -> None:
    """Run ``script`` (which forks) in a fresh interpreter with no other threads: forking
    the test process (its mail sink and receivers run threads) is what Python warns against."""
    done = subprocess.run(
        [sys.executable, "-c", script, database_url],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_forked_child_does_not_reuse_its_parents_connections(database_url):
    _fork_in_a_fresh_interpreter(FORK_CHECK, database_url)


FREEZE_CHECK = """
import gc, os, sys
import api

api.create_app({"database_url": sys.argv[1]})
assert gc.get_freeze_count() == 0
child = os.fork()
if child == 0:
    os._exit(0 if gc.get_freeze_count() > 10_000 else 3)
_, status = os.waitpid(child, 0)
assert gc.get_freeze_count() == 0, "the parent's own objects stay collectable"
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_worker_inherits_the_app_frozen_out_of_the_collectors_way(database_url):
    # What gunicorn --preload does: build the app, then fork workers from it.
    _fork_in_a_fresh_interpreter(FREEZE_CHECK, database_url)
