"""Alembic migrations (run by ``moodtrack db upgrade``)."""
