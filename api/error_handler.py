"""The single error handler: whatever went wrong, whoever raised it, answers problem+json.

Split from the vocabulary (``api.errors``) because it needs what the vocabulary's users sit
below: the audit trail records refused requests.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import suppress
from http import HTTPStatus

from flask import Response
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

from api.audit import record_failure
from api.db import rollback_request
from api.errors import ApiError, from_domain, from_validation, problem_response
from models.errors import DomainError

log = logging.getLogger("moodtrack")


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


def handle_any(exc: BaseException) -> Response:
    """The single error handler, registered with Flask and flask-restx alike."""
    # Roll back whatever the failed request wrote: bad input changes nothing.
    # A lost connection cannot roll back; the database dropped the transaction itself.
    with suppress(SQLAlchemyError):
        rollback_request()
    error = to_api_error(exc)
    record_failure(error.status)
    return problem_response(error)
