"""Instant arithmetic inside SQL, spelled for each database we run on.

SQLAlchemy stores instants on SQLite as text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC here); text
order is time order, so a shifted instant must come back in exactly that shape.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Date, String, cast, func, literal, literal_column
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import type_coerce

from models.base import UTCDateTime


def dialect_of(db: Session | str) -> str:
    """'sqlite' or 'postgresql', of a session or already a dialect name (statements built
    once per dialect take the name)."""
    return db if isinstance(db, str) else db.get_bind().dialect.name


def shifted(db: Session | str, instant: ColumnElement[Any], seconds: int) -> ColumnElement[Any]:
    """``instant`` plus ``seconds`` (negative to go back)."""
    if dialect_of(db) == "postgresql":
        return instant + literal_column("interval '1 second'") * literal(seconds)
    modifier = cast(literal(f"{seconds:+d} seconds"), String)
    # Whole seconds through strftime, the stored microseconds copied as they are: SQLite's
    # date functions keep milliseconds only, and round them (…:00.9996 would become :01).
    whole = func.strftime("%Y-%m-%d %H:%M:%S", func.substr(instant, 1, 19), modifier)
    return type_coerce(whole.concat(func.substr(instant, 20)), UTCDateTime())


def week_start(db: Session | str, day: ColumnElement[Any]) -> ColumnElement[Any]:
    """The Monday of the ISO week containing ``day``."""
    if dialect_of(db) == "postgresql":
        return cast(func.date_trunc("week", day), Date)
    return type_coerce(func.date(day, "weekday 0", "-6 days"), Date)


def month_start(db: Session | str, day: ColumnElement[Any]) -> ColumnElement[Any]:
    """The first day of the month containing ``day``."""
    if dialect_of(db) == "postgresql":
        return cast(func.date_trunc("month", day), Date)
    return type_coerce(func.date(day, "start of month"), Date)
