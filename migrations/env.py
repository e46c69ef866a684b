"""Alembic environment: the URL comes from the caller (``moodtrack db upgrade``) or DATABASE_URL."""

from __future__ import annotations

from alembic import context

from api.config import load_settings
from api.db import make_engine
from models import Base

config = context.config
url = config.attributes.get("database_url") or load_settings().database_url
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


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
