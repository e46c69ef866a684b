"""The error vocabulary: ApiError, the problems our code raises, and how one is written as
RFC 9457 problem+json. Any module may raise these; ``api.error_handler`` turns whatever was
raised into one of them."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, current_app, g, json
from marshmallow import ValidationError

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
