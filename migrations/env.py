"""Alembic environment: the URL comes from the caller (``moodtrack db upgrade``) or DATABASE_URL."""

from __future__ import annotations

from alembic import context

from api.config import load_settings
from api.db import make_engine
from models import Base

config = context.config
url = config.attributes.get("database_url") or load_settings().database_url
connection = config.attributes.get("connection")


def _foreign_keys(conn, on: bool) -> None:
    # On the driver's connection, outside any transaction (where SQLite ignores the pragma).
    conn.connection.driver_connection.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _run(conn) -> None:
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations copy a table and drop the old one; with foreign keys on, dropping
        # `users` would first delete its rows and cascade into every table that refers to it.
        _foreign_keys(conn, on=False)
    try:
        context.configure(
            connection=conn,
            target_metadata=Base.metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            _foreign_keys(conn, on=True)


if connection is not None:
    _run(connection)
else:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()
