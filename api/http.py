"""Request and response plumbing shared by every view."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import Response, current_app, request
from marshmallow import Schema
from sqlalchemy import BigInteger, ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session
from werkzeug.http import unquote_etag

from api.errors import ApiError, not_found, validation_error
from api.jsonbody import MalformedJson, decode_json
from schemas.common import fits_sql_integer, instant_in_range, query_whole_number

JSON_TYPES = ("application/json", "application/merge-patch+json")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


def load_body(schema: Schema) -> dict[str, Any]:
    """Parse and validate the JSON body: 415 wrong type, 400 malformed, 422 invalid."""
    if request.mimetype not in JSON_TYPES:
        raise ApiError(415, "Send the body as application/json.", slug="unsupported-media-type")
    try:
        payload = decode_json(request.get_data(cache=True))
    except MalformedJson:
        raise ApiError(400, "The request body is not valid JSON.", slug="malformed-json") from None
    if not isinstance(payload, dict):
        raise validation_error({"_body": ["Expected a JSON object."]})
    return schema.load(payload)


def encode_json(data: Any) -> bytes:
    """Compact UTF-8 JSON. orjson: a two-year daily series encodes about ten times faster
    than with the standard library, and it writes the same text for the types we send."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def json_response(
    data: Any,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    etag: str | None = None,
) -> Response:
    """A JSON response; ``etag`` is set verbatim (already quoted)."""
    response = current_app.response_class(
        encode_json(data),
        status=status,
        mimetype="application/json",
    )
    if etag is not None:
        response.headers["ETag"] = etag
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def created_response(
    body: Any, *, record_id: Any, etag: str | None, created: bool, location: bool = True
) -> Response:
    """The answer to an idempotent create: 201, or 200 for a replay; with Location when
    the record has a URL of its own (``location``) and ETag when it has versions."""
    return json_response(
        body,
        201 if created else 200,
        etag=etag,
        headers={"Location": f"{request.path}/{record_id}"} if location else None,
    )


def empty_response(status: int = 204) -> Response:
    """A response without a body."""
    return current_app.response_class(status=status)


def require_if_match(current_etag: str) -> None:
    """Optimistic concurrency: 428 without If-Match, 412 when it names another version."""
    if not request.headers.get("If-Match"):
        raise ApiError(
            428, "Send If-Match with the ETag you last read.", slug="precondition-required"
        )
    # RFC 9110 §13.1.1: If-Match compares strongly, so W/"1" never matches "1".
    # werkzeug parses the list (quoting, W/, *) and its contains() is the strong comparison.
    if not request.if_match.contains(unquote_etag(current_etag)[0]):
        raise ApiError(
            412,
            "The resource changed since you read it; fetch it again.",
            slug="precondition-failed",
        )


def page_limit() -> int:
    """``limit`` query parameter: default 50, 1 to 500, else 422."""
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        return query_whole_number(raw, low=1, high=MAX_LIMIT)
    except ValueError:
        raise validation_error(
            {"limit": [f"Must be a whole number from 1 to {MAX_LIMIT}."]}
        ) from None


def encode_cursor(values: list[Any]) -> str:
    """An opaque cursor for keyset paging."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(*, arity: int) -> list[Any] | None:
    """The ``cursor`` query parameter, or None; 422 when it is not one we issued."""
    raw = request.args.get("cursor")
    if raw is None:
        return None
    try:
        values = decode_json(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (MalformedJson, ValueError):  # binascii.Error, and non-ASCII text, are ValueErrors
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise validation_error({"cursor": ["Not a cursor this API issued."]})
    return values


def _encode_key_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_key_value(value: Any, key: ColumnElement[Any]) -> Any:
    # A cursor comes back from the client: its values are checked like any other input.
    kind = key.type.python_type
    if kind is datetime:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None or not instant_in_range(parsed):
            raise ValueError("naive or out of range")
        return parsed
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is int and not fits_sql_integer(value, big=isinstance(key.type, BigInteger)):
        raise ValueError("not a SQL integer")
    if not isinstance(value, kind):
        raise TypeError(kind.__name__)
    return value


def keyset_page(
    db: Session,
    stmt: Select[Any],
    *,
    keys: tuple[ColumnElement[Any], ...],
    key_of: Callable[[Any], tuple[Any, ...]],
    descending: bool = True,
) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` ordered by ``keys``, after the request's ``cursor``.

    The cursor holds the last row's key values, so pages stay correct while rows are
    inserted. ``stmt`` must already be ordered by ``keys`` in the given direction.
    """
    limit = page_limit()
    raw = decode_cursor(arity=len(keys))
    if raw is not None:
        try:
            after = [_decode_key_value(v, k) for v, k in zip(raw, keys, strict=True)]
        except (ValueError, TypeError, AttributeError):
            raise validation_error({"cursor": ["Not a cursor this API issued."]}) from None
        stmt = stmt.where(_after(keys, after, descending=descending))
    rows = db.execute(stmt.limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([_encode_key_value(v) for v in key_of(rows[-1])])
    return rows, next_cursor


def _after(
    keys: tuple[ColumnElement[Any], ...], values: list[Any], *, descending: bool
) -> ColumnElement[bool]:
    # (a, b) < (x, y) spelled out, so each comparison binds with its column's type.
    first, rest = keys[0], keys[1:]
    beyond = first < values[0] if descending else first > values[0]
    if not rest:
        return beyond
    return or_(beyond, and_(first == values[0], _after(rest, values[1:], descending=descending)))


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def path_id(raw: str) -> uuid.UUID:
    """An id from the URL path; one that is not a UUID names no record, so it is a 404."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found() from None


def idempotency_key() -> str | None:
    """The Idempotency-Key header, if any; 422 when it is not 1 to 255 visible ASCII."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise validation_error({"Idempotency-Key": ["Must be 1 to 255 visible ASCII characters."]})
    return key
