"""Real worker processes on a scratch database: shared by the delivery process tests and
`python -m bench.delivery`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select, text

from api.cli import alembic_config
from api.db import make_engine, make_session_factory
from models.base import utcnow
from models.delivery import Delivery
from models.events import EventType, emit_event
from models.webhooks import Webhook, new_secret

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def scratch_database(base_url: str | None) -> Iterator[str]:
    """A migrated database of its own, dropped afterwards: a new database on the PostgreSQL
    server of ``base_url`` when it is one, else a temporary SQLite file."""
    from alembic import command

    if base_url and base_url.startswith("postgresql"):
        name = f"mt_scratch_{uuid.uuid4().hex[:12]}"
        admin = make_engine(base_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = base_url.rsplit("/", 1)[0] + f"/{name}"
        try:
            command.upgrade(alembic_config(url), "head")
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'delivery.db'}"
        command.upgrade(alembic_config(url), "head")
        yield url


def add_webhook(url: str, endpoint: str, types: tuple[str, ...] = ("alert.raised",)) -> str:
    """Register an endpoint directly in the database; returns its secret."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as db:
            hook = Webhook(url=endpoint, event_types=list(types), secret=new_secret())
            db.add(hook)
            db.commit()
            return hook.secret
    finally:
        engine.dispose()


def emit_events(url: str, count: int, *, per_commit: int = 1) -> list[tuple[uuid.UUID, float]]:
    """``count`` alert.raised events, committed ``per_commit`` at a time; returns each
    event's id with the wall-clock time its transaction committed."""
    engine = make_engine(url)
    out: list[tuple[uuid.UUID, float]] = []
    try:
        with make_session_factory(engine)() as db:
            for start in range(0, count, per_commit):
                ids = [
                    emit_event(
                        db=db,
                        type=EventType.alert_raised,
                        patient_id=None,
                        data={
                            "alert_id": str(uuid.uuid4()),
                            "rule": "post_session_drop",
                            "priority": "medium",
                            "raised_at": utcnow().isoformat(),
                        },
                    )
                    for _ in range(min(per_commit, count - start))
                ]
                db.commit()
                committed = time.time()
                out.extend((event_id, committed) for event_id in ids)
    finally:
        engine.dispose()
    return out


def delivered_count(url: str) -> int:
    """Deliveries marked delivered."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(func.count()).where(Delivery.status == "delivered")
            ).scalar_one()
    finally:
        engine.dispose()


def worker_env(url: str, **extra: str) -> dict[str, str]:
    """The environment a worker process runs with."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MOODTRACK_SIGNING_KEYS": "k=" + "w" * 40,
        "MOODTRACK_INSTANCE_PATH": tempfile.mkdtemp(),
        "MOODTRACK_LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("TEST_DATABASE_URL", None)
    return env


def start_worker(url: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """``moodtrack worker`` as a process of its own."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            cwd=REPO,
            env=worker_env(url, **extra),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGKILL (``kill``) or SIGTERM with a bounded wait, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
