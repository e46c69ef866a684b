"""A reference line for bench.throughput: the bare cost of one durable write, served like the API.

    gunicorn 'bench.write_floor:app' --workers 4 --threads 4 ...   (bench.throughput starts it)

``POST /insert`` does what no authenticated insert can do without: parse a small JSON body,
INSERT one row and commit it (WAL fsync; SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit`` on), through the API's own engine settings (``api.db.make_engine``:
pragmas, BEGIN IMMEDIATE on SQLite, pre-ping on PostgreSQL) with a SQLAlchemy Core statement.
No auth, no rate limit, no validation, no audit row, no logging: the API's write figure
read against this one shows what the application itself costs over a durable insert.
"""

from __future__ import annotations

import json
import os
import uuid

from flask import Flask, Response, jsonify, request
from sqlalchemy import Column, Integer, MetaData, Table, Text, Uuid, insert, text

from api.db import make_engine

metadata = MetaData()
rows = Table(
    "bench_write_floor",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("note", Text),
)
_INSERT = insert(rows)

engine = make_engine(os.environ["DATABASE_URL"])
with engine.begin() as connection:
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

app = Flask(__name__)


@app.post("/insert")
def insert_one() -> Response:
    """Store the body's ``mood`` and ``note`` as one new row, committed."""
    body = json.loads(request.get_data())
    row_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(_INSERT, {"id": row_id, "n": body["mood"], "note": body.get("note")})
    return jsonify(id=str(row_id))


@app.get("/healthz")
def healthz() -> Response:
    """What the benchmark polls to know the server is up."""
    return jsonify(status="ok")
