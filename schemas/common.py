"""Field types and validators shared by several schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from marshmallow import Schema, ValidationError, fields, validate


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(value: str) -> None:
    """An IANA time zone name such as Europe/London."""
    if value not in _zones():
        raise ValidationError("Not a known IANA time zone name (for example Europe/London).")


class TimeZoneField(fields.String):
    """An IANA time zone name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=validate_timezone,
            metadata={"description": "IANA time zone name", "example": "America/Chicago"},
            **kwargs,
        )


def display_name_field(**kwargs: Any) -> fields.String:
    """A person's name as shown to their care team."""
    return fields.String(validate=validate.Length(min=1, max=100), **kwargs)


def password_field(**kwargs: Any) -> fields.String:
    """A password; the policy beyond length is checked by models.passwords."""
    return fields.String(
        validate=validate.Length(min=1, max=1024),
        load_only=True,
        metadata={"format": "password"},
        **kwargs,
    )


class PageOut(Schema):
    """Paging fields every list response carries."""

    next_cursor = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Pass as `cursor` for the next page; null on the last."},
    )


class StrictInteger(fields.Integer):
    """An integer that refuses 2.5, "2" and true (marshmallow counts bool as Integral)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictNumber(fields.Float):
    """A JSON number (integer or decimal); strings, booleans, NaN and infinities are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


# A device clock may run a little fast; beyond this an instant is a mistake.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_AGE = timedelta(days=366)


def validate_occurred_at(value: datetime) -> None:
    """An instant with an offset, not more than 5 minutes ahead nor more than a year old."""
    now = datetime.now(UTC)
    if value > now + FUTURE_TOLERANCE:
        raise ValidationError("Must not be more than 5 minutes in the future.")
    if value < now - MAX_AGE:
        raise ValidationError("Must not be more than a year in the past.")


def occurred_at_field(**kwargs: Any) -> fields.AwareDateTime:
    """When the patient felt or answered: RFC 3339 with an offset (naive times are refused)."""
    return fields.AwareDateTime(
        validate=validate_occurred_at,
        metadata={
            "description": "RFC 3339 instant with the device's UTC offset, e.g. "
            "2026-11-27T23:30:00-08:00. The offset decides the patient's local date."
        },
        **kwargs,
    )


def validate_text(value: str) -> None:
    """Free text is kept exactly, but NUL cannot be stored by PostgreSQL."""
    if "\x00" in value:
        raise ValidationError("Must not contain the NUL character.")


def note_field(max_length: int = 2000, **kwargs: Any) -> fields.String:
    """A free-text note kept exactly as typed (any Unicode)."""
    return fields.String(
        validate=[validate.Length(max=max_length), validate_text],
        metadata={"description": f"Free text, at most {max_length} characters, kept exactly."},
        **kwargs,
    )


def format_offset(minutes: int) -> str:
    """A UTC offset in minutes as RFC 3339 writes it: -480 gives "-08:00"."""
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


class UtcOffset(fields.String):
    """A UTC offset held in minutes, written as RFC 3339 writes it ("-08:00")."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_offset(int(value))
