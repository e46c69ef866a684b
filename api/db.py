"""Engine and the one-session-per-request pattern."""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

from flask import current_app, g, has_request_context, request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A pooled connection idle longer than this is pinged before use (see _ping_idle).
PING_AFTER_IDLE_SECONDS = 2.0


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
        return _care_for_pooled_connections(engine)
    # A database that does not answer must not hold a request until gunicorn's timeout:
    # connecting gives up after 5 s (the URL's own connect_timeout wins) and answers 503.
    if "connect_timeout=" not in url:
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return _care_for_pooled_connections(create_engine(url, hide_parameters=True, **kwargs))


def _care_for_pooled_connections(engine: Engine) -> Engine:
    """What every engine's pool does, whatever the database: ping idle connections, and
    never hand a forked child its parent's."""
    _ping_idle(engine)
    _forget_connections_at_fork(engine)
    return engine


def _forget_connections_at_fork(engine: Engine) -> None:
    """A forked child (gunicorn --preload's workers) drops the pooled connections it
    inherited, unclosed: they belong to the parent, and two processes talking on one socket
    corrupt each other's conversations (SQLAlchemy's "Using Connection Pools with
    Multiprocessing"). The engine is held weakly: an engine a test drops is not kept."""
    ref = weakref.ref(engine)

    def forget() -> None:
        inherited = ref()
        if inherited is not None:
            inherited.dispose(close=False)

    os.register_at_fork(after_in_child=forget)


def _ping_idle(engine: Engine) -> None:
    """Ping a connection before use only when it sat idle in the pool for a while.

    SQLAlchemy's pool_pre_ping costs a round trip on every checkout: a quarter of an
    authenticated GET /me. A connection in steady use has just proved itself; one that sat
    idle (a quiet night, a database restarted meanwhile) is pinged and, if dead, replaced
    before the request sees it. A connection that breaks between uses under load fails that
    one request with 503 + Retry-After, and SQLAlchemy then retires every older connection
    of the pool (its disconnect handling), so the next requests connect afresh."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as dead:
            # The pool discards this connection and checks out another (or a new one).
            raise DisconnectionError() from dead


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
        in_request = has_request_context()
        if writer or (
            in_request and (request.method not in SAFE_METHODS or g.get("audit_write", False))
        ):
            # A writing request takes the write lock up front: a deferred transaction that
            # reads and then writes can fail with SQLITE_BUSY no matter the busy timeout.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif not in_request:
            connection.exec_driver_sql("BEGIN")
        # A safe request reads in autocommit, as on PostgreSQL (get_db): no BEGIN, and the
        # DBAPI's rollback at the end is a no-op. In WAL mode each statement reads its own
        # snapshot, as each does at PostgreSQL's READ COMMITTED. Its audit row (a read's, or
        # a refusal's) is written in a transaction of its own that takes the write lock at
        # BEGIN (api.audit sets g.audit_write).


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (responses are built after)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def settings() -> Any:
    """The app's Settings (api.config.Settings)."""
    return current_app.extensions["moodtrack"].settings


def get_connection() -> Connection:
    """This request's database connection, checked out on first use.

    The token check runs its one Core query here, and a request that needs nothing more
    (GET /me) never builds a Session: opening and closing one was a fifth of its Python
    time. Views that use the ORM get a Session on this same connection (get_db)."""
    if "connection" not in g:
        bind = current_app.extensions["moodtrack"].session_factory.kw["bind"]
        if isinstance(bind, Connection):
            # A test's connection inside an outer transaction: used here, closed by the test.
            g.connection, g.owns_connection = bind, False
        else:
            connection = bind.connect()
            if _safe_request() and bind.dialect.name == "postgresql":
                # A read runs each statement in its own transaction: no BEGIN and ROLLBACK
                # round trips. It sees what it would inside one: at READ COMMITTED
                # (PostgreSQL's default, ours) every statement takes a fresh snapshot
                # anyway. Its access audit rows are written after the read (any missing
                # pseudonym first, an idempotent upsert), each statement committed as it
                # runs; "no audit row, no data" still holds (api.audit answers 503 if the
                # INSERT fails).
                connection.execution_options(isolation_level="AUTOCOMMIT")
            g.connection, g.owns_connection = connection, True
    return g.connection


def get_db() -> Session:
    """This request's session, opened on first use, on the request's connection."""
    if "db" not in g:
        factory = current_app.extensions["moodtrack"].session_factory
        connection = get_connection()
        if not g.owns_connection:
            # A test's session makes a savepoint in the test's outer transaction.
            g.db = factory()
            return g.db
        # The session owns the connection's transaction, including the one the token check's
        # query began, and commits or rolls it back. A read's audit row (api.audit) and a
        # refusal's (after rollback_request) are written once that transaction has ended.
        g.db = factory(bind=connection, join_transaction_mode="control_fully")
    return g.db


def _safe_request() -> bool:
    return has_request_context() and request.method in SAFE_METHODS


def commits_are_durable() -> bool:
    """Whether this request's commits reach the database (not a test's outer transaction)."""
    return bool(g.get("owns_connection", False))


def rollback_request() -> None:
    """End what this request began: its session's transaction, and the connection's when
    the session never took it over (the token check's query began it; on a writing request
    on SQLite, BEGIN IMMEDIATE: its write lock is freed now, not at teardown). What is
    written next begins a transaction of its own."""
    db = g.get("db")
    if db is not None:
        db.rollback()
    connection = g.get("connection")
    if connection is not None and g.get("owns_connection") and connection.in_transaction():
        connection.rollback()


def close_db(_exc: BaseException | None = None) -> None:
    """Close the request's session and connection (teardown); uncommitted work is rolled
    back, and the connection goes back to the pool."""
    db = g.pop("db", None)
    connection = g.pop("connection", None)
    owned = g.pop("owns_connection", False)
    try:
        if db is not None:
            db.close()
    finally:
        if connection is not None and owned:
            connection.close()
