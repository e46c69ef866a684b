"""Field types and validators shared by several schemas."""

from __future__ import annotations

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
