"""Engine and the one-session-per-request pattern."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, has_request_context, request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def make_engine(url: str, *, writer: bool = False, **kwargs: Any) -> Engine:
    """An engine with the settings this service relies on, for SQLite or PostgreSQL.

    ``writer``: every SQLite transaction takes the write lock at BEGIN (the delivery
    worker's transactions all write; outside a request nothing else says so)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 30, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine, writer=writer)
        return engine
    # A database that does not answer must not hold a request until gunicorn's timeout:
    # connecting gives up after 5 s (the URL's own connect_timeout wins) and answers 503.
    if "connect_timeout=" not in url:
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, hide_parameters=True, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine, *, writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite (SQLAlchemy SQLite docs), so SAVEPOINTs work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in pages
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A writing request takes the write lock up front: a deferred transaction that reads
        # and then writes can fail with SQLITE_BUSY no matter the busy timeout.
        writes = writer or (
            has_request_context()
            and (request.method not in SAFE_METHODS or g.get("audit_write", False))
        )
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (responses are built after)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def settings() -> Any:
    """The app's Settings (api.config.Settings)."""
    return current_app.extensions["moodtrack"].settings


def get_db() -> Session:
    """This request's session, opened on first use."""
    if "db" not in g:
        g.db = current_app.extensions["moodtrack"].session_factory()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    """Close the request's session (teardown); uncommitted work is rolled back."""
    db = g.pop("db", None)
    if db is not None:
        db.close()
