"""Shared set-up for the benchmarks: a migrated database and an app on it."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from api import create_app
from api.cli import alembic_config
from api.config import Settings
from api.db import make_engine
from api.mail import MemoryMailer
from models.passwords import Argon2Params


def fresh_database(url: str | None) -> str:
    """A migrated, empty database: a temporary SQLite file unless ``url`` is given (wiped)."""
    from alembic import command

    if url is None:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    return url


def bench_app(url: str) -> Any:
    """The app as production builds it, on ``url`` (cheap password hashing: not measured);
    sign-up codes are kept in memory (``sign_up``) instead of being emailed."""
    app = create_app(
        Settings(
            database_url=url,
            signing_keys={"bench": b"b" * 48},
            active_kid="bench",
            argon2=Argon2Params(time_cost=1, memory_kib=1024, parallelism=1),
            instance_path=Path(tempfile.mkdtemp()),
            log_level="WARNING",
        )
    )
    app.extensions["moodtrack"].mailer = MemoryMailer()
    return app


def sign_up(app: Any, client: Any, email: str, password: str) -> None:
    """A patient account through the API: sign-up, the code from the in-memory mailer, confirm."""
    body = {"email": email, "password": password, "display_name": "B", "timezone": "UTC"}
    assert client.post("/api/v1/auth/register", json=body).status_code == 202
    code = app.extensions["moodtrack"].mailer.code_for(email)
    confirm = {"email": email, "code": code, "password": password}
    assert client.post("/api/v1/auth/register/confirm", json=confirm).status_code == 201


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds per call over ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def describe(samples: list[float]) -> str:
    """median and p95 of millisecond samples."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"
