"""What each operation takes and gives, declared on its view: the one source of the contract.

A view declares its operation with ``@operation(...)``: the query schema (parsed before the
view runs and passed as ``query=``), the body schema (loaded when the view calls ``body()``,
so a view decides what it checks first, e.g. If-Match before the body), the replies per
status with their media types and headers, the problems it may answer, the request headers
it reads. Its docstring is the operation's prose: the first line the summary, the rest the
description. ``api.openapi`` renders openapi.yaml from these declarations and nothing else.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import g, request
from marshmallow import EXCLUDE, Schema, ValidationError

from api.errors import from_validation
from api.http import load_body

F = TypeVar("F", bound=Callable[..., Any])

JSON = "application/json"
# Each problem status and the shared response (components/responses) that describes it.
PROBLEMS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "UnprocessableEntity",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}
# Headers every reply of an /api/v1 operation carries.
API_HEADERS = ("X-Request-ID", "Cache-Control")


@dataclass(frozen=True)
class Reply:
    """One successful answer: status, what it means, its body and headers.

    ``schema`` is a marshmallow schema for a JSON body (or for another JSON media type such
    as application/fhir+json); ``body`` a plain JSON schema for anything else (CSV, SVG,
    HTML: ``{"type": "string"}``); neither for an empty reply.
    """

    status: int
    description: str
    # One schema, or several for a body that is one of them (``oneOf``).
    schema: type[Schema] | tuple[type[Schema], ...] | None = None
    media: str = JSON
    body: Mapping[str, Any] | None = None
    headers: tuple[str, ...] = API_HEADERS
    # Other media types the same reply may come in, each with its schema or plain schema.
    more: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, as its view declares it."""

    operation_id: str
    tag: str
    summary: str
    description: str
    replies: tuple[Reply, ...]
    problems: tuple[int, ...]
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    body_required: bool = True
    # Shared parameters it reads, by their names in components/parameters: request headers
    # (IfMatch, IdempotencyKey), and query parameters not yet read through ``query``.
    parameters: tuple[str, ...] = ()
    public: bool = False
    callbacks: Mapping[str, Any] | None = None


def operation(
    *,
    operation_id: str,
    tag: str,
    replies: tuple[Reply, ...] | list[Reply],
    problems: tuple[int, ...] = (),
    query: type[Schema] | None = None,
    body: type[Schema] | None = None,
    body_required: bool = True,
    parameters: tuple[str, ...] = (),
    public: bool = False,
    callbacks: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Declare a view's operation (see the module docstring)."""

    def decorate(view: F) -> F:
        doc = inspect.getdoc(view) or ""
        summary, _, description = doc.partition("\n")
        declared = Operation(
            operation_id=operation_id,
            tag=tag,
            summary=summary.strip(),
            description=description.strip(),
            replies=tuple(replies),
            problems=tuple(sorted(problems)),
            query=query,
            body=body,
            body_required=body_required,
            parameters=parameters,
            public=public,
            callbacks=callbacks,
        )
        query_schema = query(unknown=EXCLUDE) if query is not None else None
        body_schema = body() if body is not None else None

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.operation_body = body_schema
            if query_schema is not None:
                kwargs["query"] = _parse_query(query_schema)
            return view(*args, **kwargs)

        wrapper.operation = declared  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _parse_query(schema: Schema) -> dict[str, Any]:
    try:
        return schema.load(request.args.to_dict(flat=True))
    except ValidationError as exc:
        raise from_validation(exc) from None


def body() -> dict[str, Any]:
    """The request body, loaded through the operation's declared body schema."""
    schema = g.get("operation_body")
    if schema is None:
        raise RuntimeError("this operation declares no body")
    return load_body(schema)


def declared(view: Callable[..., Any]) -> Operation | None:
    """The operation a view declares, through any decorators around it."""
    return getattr(view, "operation", None)
