"""Operational routes outside /api/v1: liveness, readiness, the contract and its docs."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from flask import Blueprint, Response, current_app, render_template_string, url_for
from markupsafe import Markup
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.contract import Reply, operation
from api.errors import ApiError, problem_response
from api.headers import docs_policy
from api.http import json_response

meta = Blueprint("meta", __name__)

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moodtrack API</title>
<link rel="stylesheet" href="{{ css }}"></head>
<body><div id="swagger-ui"></div>
<script src="{{ bundle }}"></script>
<script>{{ start }}</script></body></html>
"""
# The one inline script, allowed by its hash (api.headers.docs_policy). No validator badge:
# it would send the contract's URL to validator.swagger.io.
_DOCS_START = """
window.onload = function () {
  SwaggerUIBundle({url: %s, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null});
};
"""


@cache
def openapi_text() -> str:
    """The contract (written by ``moodtrack openapi``), shipped inside the package."""
    return resources.files("api").joinpath("static/openapi.yaml").read_text("utf-8")


@meta.get("/healthz")
@operation(
    operation_id="healthz",
    tag="meta",
    replies=[
        Reply(
            200,
            "Up.",
            schema={"$ref": "#/components/schemas/HealthStatus"},
            headers=("X-Request-ID",),
        ),
    ],
    problems=(500,),
)
def healthz() -> Response:
    """Liveness

    The process is up. Does not touch the database.
    """
    return json_response({"status": "ok"})


@meta.get("/readyz")
@operation(
    operation_id="readyz",
    tag="meta",
    replies=[
        Reply(
            200,
            "Ready to serve.",
            schema={"$ref": "#/components/schemas/ReadyStatus"},
            headers=("X-Request-ID",),
        ),
    ],
    problems=(500, 503),
)
def readyz() -> Response:
    """Readiness

    The database answers a trivial query; 503 when it does not.
    """
    try:
        with current_app.extensions["moodtrack"].engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return problem_response(
            ApiError(
                503,
                "The database is not reachable.",
                slug="unavailable",
                headers={"Retry-After": "5"},
            )
        )
    return json_response({"status": "ready"})


@meta.get("/openapi.yaml")
@operation(
    operation_id="getOpenapi",
    tag="meta",
    replies=[
        Reply(200, "The contract.", media="application/yaml", headers=("X-Request-ID",)),
    ],
    problems=(500,),
)
def openapi_yaml() -> Response:
    """This contract

    The OpenAPI 3.0.3 document generated from the code (`moodtrack openapi`), as YAML.
    """
    return current_app.response_class(openapi_text(), mimetype="application/yaml")


@meta.get("/docs")
@operation(
    operation_id="getDocs",
    tag="meta",
    replies=[
        Reply(
            200,
            "An HTML page.",
            body={"type": "string"},
            media="text/html",
            headers=("X-Request-ID",),
        ),
    ],
    problems=(500,),
)
def docs() -> Response:
    """Interactive docs

    Swagger UI over `/openapi.yaml`.
    """
    start = _DOCS_START % json.dumps(url_for("meta.openapi_yaml"))
    page = render_template_string(
        _DOCS_PAGE,
        css=url_for("restx_doc.static", filename="swagger-ui.css"),
        bundle=url_for("restx_doc.static", filename="swagger-ui-bundle.js"),
        start=Markup(start),
    )
    response = current_app.response_class(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = docs_policy(start)
    return response
