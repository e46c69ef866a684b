"""Reference lines for bench.throughput: the bare cost of one durable write, and of one
indexed read, served like the API.

    gunicorn 'bench.write_floor:app' --workers 4 --threads 4 ...   (bench.throughput starts it)

``POST /insert`` does what no authenticated insert can do without: parse a small JSON body,
INSERT one row and commit it (WAL fsync; SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit`` on), through the API's own engine settings (``api.db.make_engine``:
pragmas, BEGIN IMMEDIATE on SQLite, pre-ping on PostgreSQL) with a SQLAlchemy Core statement.
No auth, no rate limit, no validation, no audit row, no logging: the API's write figure
read against this one shows what the application itself costs over a durable insert.

``GET /read`` is the same for a read: one row by its primary key, as an authenticated
request's token check must read its caller, in autocommit as the API's reads run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, jsonify, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    insert,
    select,
    text,
)

from api.db import make_engine
from api.limits import REDIS_OPTIONS

# The row GET /read reads; inserted once, at import, if absent.
READ_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
metadata = MetaData()
rows = Table(
    "bench_write_floor",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("note", Text),
)
audit_rows = Table(
    "bench_write_floor_audit",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Uuid, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource_id", Uuid, nullable=False),
)
_INSERT = insert(rows)
_AUDIT = insert(audit_rows)
_READ = select(rows.c.id, rows.c.n, rows.c.note).where(rows.c.id == READ_ID)

engine = make_engine(os.environ["DATABASE_URL"])
# Set-up's transaction takes SQLite's write lock at BEGIN (writer=True): it reads, then may
# write, while the other workers do the same.
setup = make_engine(os.environ["DATABASE_URL"], writer=True)
with setup.begin() as connection:
    # Every gunicorn worker imports this module at once, and PostgreSQL's CREATE TABLE IF
    # NOT EXISTS is not safe against a concurrent one: take turns (SQLite's lock suffices).
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7417)"))
    connection.execute(
        text(
            "CREATE TABLE IF NOT EXISTS bench_write_floor "
            "(id UUID PRIMARY KEY, n INTEGER NOT NULL, note TEXT)"
            if engine.dialect.name == "postgresql"
            else "CREATE TABLE IF NOT EXISTS bench_write_floor "
            "(id CHAR(32) PRIMARY KEY, n INTEGER NOT NULL, note TEXT)"
        )
    )
    connection.execute(
        text(
            "CREATE TABLE IF NOT EXISTS bench_write_floor_audit (id UUID PRIMARY KEY, "
            "at TIMESTAMPTZ NOT NULL, actor UUID NOT NULL, action TEXT NOT NULL, "
            "resource_id UUID NOT NULL)"
            if engine.dialect.name == "postgresql"
            else "CREATE TABLE IF NOT EXISTS bench_write_floor_audit (id CHAR(32) PRIMARY KEY, "
            "at DATETIME NOT NULL, actor CHAR(32) NOT NULL, action TEXT NOT NULL, "
            "resource_id CHAR(32) NOT NULL)"
        )
    )
    if connection.execute(_READ).first() is None:
        connection.execute(_INSERT, {"id": READ_ID, "n": 5, "note": None})
setup.dispose()
# Reads run in autocommit, as the API's do (api.db): no BEGIN or ROLLBACK round trips. On
# SQLite, api.db's begin hook already sends no BEGIN for a GET.
reader = (
    engine.execution_options(isolation_level="AUTOCOMMIT")
    if engine.dialect.name == "postgresql"
    else engine
)

# The API's write limit, counted as the API counts it (bench.throughput sets a limit its
# load never reaches, in Redis), with the API's Redis timeouts.
_LIMITS_URL = os.environ.get("MOODTRACK_RATELIMIT_STORAGE_URL", "memory://")
_window = MovingWindowRateLimiter(
    storage_from_string(_LIMITS_URL, **({} if _LIMITS_URL == "memory://" else REDIS_OPTIONS))
)
_WRITE_LIMIT = parse(os.environ.get("MOODTRACK_RATELIMIT_WRITES_PER_USER", "100000000/minute"))
# One JSON line per write on standard error, as the API's request log writes under gunicorn.
request_log = logging.getLogger("bench.write_floor")
if not request_log.handlers:  # imported again (tests): one handler still
    request_log.addHandler(logging.StreamHandler())
request_log.setLevel(logging.INFO)
request_log.propagate = False

app = Flask(__name__)


@app.post("/insert")
def insert_one() -> Response:
    """Store the body's ``mood`` and ``note`` as one new row, committed."""
    body = json.loads(request.get_data())
    row_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(_INSERT, {"id": row_id, "n": body["mood"], "note": body.get("note")})
    return jsonify(id=str(row_id))


@app.post("/insert-with-fixed-work")
def insert_with_fixed_work() -> Response:
    """/insert, plus what no authenticated write gives up: rate limit, caller, audit, log."""
    body = json.loads(request.get_data())
    caller_key = hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()
    if not _window.hit(_WRITE_LIMIT, "floor", caller_key, "writes-user"):
        return jsonify(status=429), 429
    row_id = uuid.uuid4()
    with engine.begin() as connection:
        caller = connection.execute(_READ).one()
        connection.execute(_INSERT, {"id": row_id, "n": body["mood"], "note": body.get("note")})
        audit = {"id": uuid.uuid4(), "at": datetime.now(UTC), "actor": caller.id}
        connection.execute(_AUDIT, {**audit, "action": "create", "resource_id": row_id})
    request_log.info(json.dumps({"method": "POST", "path": request.path, "status": 201}))
    return jsonify(id=str(row_id))


@app.get("/read")
def read_one() -> Response:
    """The one seeded row, as JSON."""
    with reader.connect() as connection:
        row = connection.execute(_READ).one()
    return jsonify(id=str(row.id), n=row.n, note=row.note)


@app.get("/healthz")
def healthz() -> Response:
    """What the benchmark polls to know the server is up."""
    return jsonify(status="ok")
