"""Operational routes outside /api/v1: liveness, readiness, the contract and its docs."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template_string, url_for
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.errors import ApiError, problem_response
from api.http import json_response

meta = Blueprint("meta", __name__)

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moodtrack API</title>
<link rel="stylesheet" href="{{ css }}"></head>
<body><div id="swagger-ui"></div>
<script src="{{ bundle }}"></script>
<script>
window.onload = function () {
  SwaggerUIBundle({url: "{{ spec }}", dom_id: "#swagger-ui", deepLinking: true});
};
</script></body></html>
"""


@cache
def openapi_text() -> str:
    """The hand-written contract, shipped inside the package."""
    return resources.files("api").joinpath("static/openapi.yaml").read_text("utf-8")


def openapi_path() -> Path:
    """Where the contract lives in a source checkout (the tests read it from there too)."""
    return Path(str(resources.files("api").joinpath("static/openapi.yaml")))


@meta.get("/healthz")
def healthz() -> Response:
    """The process is up."""
    return json_response({"status": "ok"})


@meta.get("/readyz")
def readyz() -> Response:
    """The database answers; 503 problem+json otherwise."""
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
def openapi_yaml() -> Response:
    """The OpenAPI 3.0.3 contract."""
    return current_app.response_class(openapi_text(), mimetype="application/yaml")


@meta.get("/docs")
def docs() -> str:
    """Swagger UI over /openapi.yaml."""
    return render_template_string(
        _DOCS_PAGE,
        css=url_for("restx_doc.static", filename="swagger-ui.css"),
        bundle=url_for("restx_doc.static", filename="swagger-ui-bundle.js"),
        spec=url_for("meta.openapi_yaml"),
    )
