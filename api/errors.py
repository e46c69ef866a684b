"""RFC 9457 problem+json for every error, whoever raised it."""

from __future__ import annotations

import logging
import traceback
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from flask import Response, current_app, g, json
from marshmallow import ValidationError
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from api.limits import retry_after_seconds
from models.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidCredentials,
    NotFound,
    PreconditionFailed,
    RuleViolation,
    TooManyAttempts,
)

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("moodtrack")


class ApiError(Exception):
    """An HTTP error raised by our own code; carries no request data by construction."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.errors = errors
        self.headers = headers or {}


def unauthorized(detail: str = "A valid bearer token is required.") -> ApiError:
    """401 with the challenge RFC 6750 asks for."""
    return ApiError(
        401,
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="moodtrack", error="invalid_token"'},
    )


def not_found(detail: str = "The requested resource was not found.") -> ApiError:
    """404, also used for things the caller may not know exist."""
    return ApiError(404, detail, slug="not-found")


def validation_error(errors: dict[str, list[str]]) -> ApiError:
    """422 with per-field messages (messages only; never the submitted values)."""
    return ApiError(422, "One or more fields are invalid.", slug="validation", errors=errors)


def _field_name(key: Any) -> str:
    # An unknown field is named by the client's own key, which may hold an unpaired
    # surrogate that no encoder can write: show it escaped instead.
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow nests errors; the wire format is {field: [messages]}, dotted for nesting."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{_field_name(key)}" if prefix else _field_name(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "_body"] = list(messages)
        else:
            for m in messages:
                for k, v in _flatten(m, prefix).items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "_body"] = [str(messages)]
    return out


def from_validation(exc: ValidationError) -> ApiError:
    """Convert marshmallow's error, dropping ``exc.data`` (the raw request)."""
    return validation_error(_flatten(exc.messages))


_DOMAIN_STATUS: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, "not-found"),
    Conflict: (409, "conflict"),
    Forbidden: (403, "forbidden"),
    InvalidCredentials: (401, "unauthorized"),
    TooManyAttempts: (429, "too-many-requests"),
    RuleViolation: (422, "validation"),
    PreconditionFailed: (412, "precondition-failed"),
}


def from_domain(exc: DomainError) -> ApiError:
    """Map a business-rule failure to its HTTP form."""
    status, slug = next(
        (v for cls, v in _DOMAIN_STATUS.items() if isinstance(exc, cls)), (400, "bad-request")
    )
    if isinstance(exc, InvalidCredentials):
        return unauthorized(exc.detail)
    headers = {}
    if isinstance(exc, TooManyAttempts):
        headers["Retry-After"] = str(exc.retry_after_seconds)
    errors = exc.errors if isinstance(exc, RuleViolation) else None
    return ApiError(status, exc.detail, slug=slug, errors=errors, headers=headers)


def _from_http(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    detail = {
        400: "The request body is not valid JSON.",
        404: "The requested resource was not found.",
        405: "This method is not allowed on this resource.",
        413: "The request body is larger than the 1 MiB limit.",
        415: "Send the body as application/json.",
    }.get(status) or _phrase(status)
    headers = {}
    valid_methods = getattr(exc, "valid_methods", None)
    if status == 405 and valid_methods:
        headers["Allow"] = ", ".join(sorted(valid_methods))
    return ApiError(status, detail, headers=headers)


def _rate_limited() -> ApiError:
    """Flask-Limiter's RateLimitExceeded: 429 with the wait the breached window still needs."""
    return ApiError(
        429,
        "Too many requests; try again after the number of seconds in Retry-After.",
        slug="too-many-requests",
        headers={"Retry-After": str(retry_after_seconds())},
    )


# SQLSTATEs that mean "no database right now": class 08 (connection exception) and 57P01-03
# (admin or crash shutdown, "the database system is starting up / shutting down").
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_SQLITE_BUSY_OR_LOCKED = (5, 6)


def _database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection: transient, retry later."""
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", "")
    if sqlstate:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    if getattr(orig, "sqlite_errorcode", None) in _SQLITE_BUSY_OR_LOCKED:
        return True
    # psycopg's own errors without a SQLSTATE: refused, lost or closed connections.
    return sqlstate is None and isinstance(exc, OperationalError | InterfaceError)


def _unavailable(exc: BaseException) -> ApiError:
    log.warning(
        "database unavailable",
        extra={"fields": {"exception": type(getattr(exc, "orig", None) or exc).__name__}},
    )
    return ApiError(
        503,
        "The database is not reachable right now; try again after Retry-After seconds.",
        slug="unavailable",
        headers={"Retry-After": "5"},
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).description
    except ValueError:
        return "The request failed."


def to_api_error(exc: BaseException) -> ApiError:
    """Whatever went wrong, as an ApiError; unexpected exceptions become a bare 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        return from_validation(exc)
    if isinstance(exc, DomainError):
        return from_domain(exc)
    if isinstance(exc, HTTPException) and exc.code == 429:
        return _rate_limited()
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    if isinstance(exc, StaleDataError):
        # Another request changed the record between our read and our write.
        return ApiError(
            412,
            "The resource changed since you read it; fetch it again.",
            slug="precondition-failed",
        )
    if _database_unavailable(exc):
        return _unavailable(exc)
    _log_unexpected(exc)
    return ApiError(500, "The server could not complete the request; nothing was changed.")


def _log_unexpected(exc: BaseException) -> None:
    # Type and location only: an exception message may quote stored values.
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename]
    where = [
        f"{'/'.join(f.filename.rsplit('/', 2)[-2:-1])}/{f.name}:{f.lineno}"
        for f in (ours or frames)[-3:]
    ]
    log.error(
        "unhandled exception",
        extra={"fields": {"exception": type(exc).__name__, "where": where}},
    )


def problem_response(error: ApiError) -> Response:
    """Render an ApiError as application/problem+json."""
    body: dict[str, Any] = {
        "type": f"urn:moodtrack:problem:{error.slug}" if error.slug else "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if error.errors is not None:
        body["errors"] = error.errors
    if g.get("request_id"):
        body["instance"] = f"urn:moodtrack:request:{g.request_id}"
    response = current_app.response_class(
        json.dumps(body), status=error.status, mimetype=PROBLEM_JSON
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def handle_any(exc: BaseException) -> Response:
    """The single error handler, registered with Flask and flask-restx alike."""
    # Roll back whatever the failed request wrote: bad input changes nothing.
    db = g.get("db")
    if db is not None:
        # A lost connection cannot roll back; the database dropped the transaction itself.
        with suppress(SQLAlchemyError):
            db.rollback()
    error = to_api_error(exc)
    from api.audit import record_failure  # the audit module imports this one

    record_failure(error.status)
    return problem_response(error)
