"""Field types and validators shared by several schemas, and the bounds of every value a
client sends: the range of dates and instants, text that can be stored, numbers that fit
SQL. Whatever reads a value from a request (a body field, a query parameter, a cursor) checks
it here, so that nothing out of range gets as far as arithmetic, encoding or the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from marshmallow import Schema, ValidationError, fields, validate

# Every date and instant a client sends lies in [1900-01-01, 2200-01-01) (instants compared
# in UTC). Any treatment record, questionnaire or query range fits with centuries to spare;
# anything outside is a typo or an attack. Far enough from Python's years 1 and 9999 that a
# ±14 h offset, an analytics window (days), an ISO week or a month bucket never leaves
# datetime's range, and inside what PostgreSQL and SQLite both store.
FIRST_DATE = date(1900, 1, 1)
LAST_DATE = date(2199, 12, 31)
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_END = datetime(2200, 1, 1, tzinfo=UTC)
DATE_RANGE_MESSAGE = "Must be from 1900-01-01 to 2199-12-31."
INSTANT_RANGE_MESSAGE = "Must be from 1900-01-01T00:00:00Z up to 2200-01-01T00:00:00Z."
# The largest values of SQL INTEGER and BIGINT on PostgreSQL (SQLite stores 64 bits for both).
SQL_INTEGER_MAX = 2**31 - 1
SQL_BIGINT_MAX = 2**63 - 1
# Longest run of digits a whole-number query parameter may have (BIGINT has 19).
_MAX_DIGITS = 19


def instant_in_range(value: datetime) -> bool:
    """An aware instant within the accepted range (compared in UTC, without converting:
    9999-12-31T23:59:59-14:00 has no UTC form in Python)."""
    return _EARLIEST <= value < _END


def date_in_range(value: date) -> bool:
    """A calendar date within the accepted range."""
    return FIRST_DATE <= value <= LAST_DATE


def fits_sql_integer(value: object, *, big: bool = False) -> bool:
    """A JSON integer (not a boolean) an INTEGER (``big``: BIGINT) column can be compared
    with; PostgreSQL refuses a parameter out of its column's range."""
    largest = SQL_BIGINT_MAX if big else SQL_INTEGER_MAX
    return isinstance(value, int) and not isinstance(value, bool) and -largest <= value <= largest


class Instant(fields.AwareDateTime):
    """An RFC 3339 instant with its UTC offset (naive times are refused), in the accepted
    range."""

    default_error_messages = {"range": INSTANT_RANGE_MESSAGE}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        instant = super()._deserialize(value, attr, data, **kwargs)
        if not instant_in_range(instant):
            raise self.make_error("range")
        return instant


class Day(fields.Date):
    """A calendar date, YYYY-MM-DD, in the accepted range."""

    default_error_messages = {"invalid": "Must be a date, YYYY-MM-DD.", "range": DATE_RANGE_MESSAGE}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        day = super()._deserialize(value, attr, data, **kwargs)
        if not date_in_range(day):
            raise self.make_error("range")
        return day


_QUERY_DAY = Day()


def query_date(raw: str) -> date:
    """A date query parameter such as ``to=2026-11-30``; ValidationError when it is not one."""
    return _QUERY_DAY.deserialize(raw)


def query_whole_number(raw: str, *, low: int, high: int) -> int:
    """A whole-number query parameter in [low, high]; ValueError otherwise.

    ASCII digits only: str.isdigit() also says yes to "²", which int() refuses, and a few
    thousand digits make int() itself refuse (Python's limit on long conversions).
    """
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS):
        raise ValueError("not a whole number")
    number = int(raw)
    if not low <= number <= high:
        raise ValueError("out of range")
    return number


class Text(fields.String):
    """A string that can be stored and encoded: no NUL (PostgreSQL text cannot hold it) and
    no unpaired UTF-16 surrogate (JSON may escape one, "\\ud800", but it has no UTF-8
    form). Every string a client sends is one of these."""

    default_error_messages = {
        "nul": "Must not contain the NUL character.",
        "surrogate": "Must be valid Unicode text (no unpaired surrogate).",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("surrogate") from None
        return text


class EmailText(fields.Email, Text):
    """An email address (rendered as format: email) with Text's rules."""


_QUERY_TEXT = Text()


def query_text(raw: str) -> str:
    """A free-text query parameter that reaches SQL (``action=``); ValidationError when it
    holds what a database cannot compare (NUL: PostgreSQL refuses the whole statement)."""
    return _QUERY_TEXT.deserialize(raw)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(value: str) -> None:
    """An IANA time zone name such as Europe/London."""
    if value not in _zones():
        raise ValidationError("Not a known IANA time zone name (for example Europe/London).")


class TimeZoneField(Text):
    """An IANA time zone name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            validate=validate_timezone,
            metadata={"description": "IANA time zone name", "example": "America/Chicago"},
            **kwargs,
        )


def display_name_field(**kwargs: Any) -> Text:
    """A person's name as shown to their care team."""
    return Text(validate=validate.Length(min=1, max=100), **kwargs)


def password_field(**kwargs: Any) -> Text:
    """A password; the policy beyond length is checked by models.passwords."""
    return Text(
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


def occurred_at_field(**kwargs: Any) -> Instant:
    """When the patient felt or answered: RFC 3339 with an offset (naive times are refused)."""
    return Instant(
        validate=validate_occurred_at,
        metadata={
            "description": "RFC 3339 instant with the device's UTC offset, e.g. "
            "2026-11-27T23:30:00-08:00. The offset decides the patient's local date."
        },
        **kwargs,
    )


def note_field(max_length: int = 2000, **kwargs: Any) -> Text:
    """A free-text note kept exactly as typed (any Unicode that has a UTF-8 form)."""
    return Text(
        validate=validate.Length(max=max_length),
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


@dataclass(frozen=True)
class Read:
    """A record as one read shows it: the stored row, plus the values that depend on the read
    rather than on the row (a session's number in the course, a create's crisis block)."""

    record: Any
    extra: Mapping[str, Any]


class RecordOut(Schema):
    """Dumps a model object, or a `Read` of one: a field is looked up in the read's extra
    values first, then on the record. The schema's field list is the only list of fields."""

    def get_attribute(self, obj: Any, attr: str, default: Any) -> Any:
        if isinstance(obj, Read):
            if attr in obj.extra:
                return obj.extra[attr]
            obj = obj.record
        return super().get_attribute(obj, attr, default)
