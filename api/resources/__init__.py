"""flask-restx namespaces under /api/v1; routing only (schemas come from marshmallow)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_restx import Api

from api.error_handler import handle_any

API_PREFIX = "/api/v1"


class ProblemApi(Api):
    """flask-restx with its error body replaced by our problem+json (see stack.md)."""

    def handle_error(self, e: Exception) -> Response:
        return handle_any(e)

    def _help_on_404(self, message: Any = None) -> Any:
        return message


def build_api(app: Flask) -> Api:
    """Register every namespace on the app."""
    from api.resources import (
        accounts,
        alerts,
        assessments,
        audit,
        care,
        due,
        emergency,
        erasure,
        instruments,
        mood,
        organisations,
        patients,
        reports,
        second_factor,
        sessions,
        trends,
        webhooks,
    )

    # add_specs only takes effect through init_app (flask-restx 1.3): no Swagger 2.0 route.
    api = ProblemApi(prefix=API_PREFIX, doc=False, catch_all_404s=False)
    for namespace in (
        accounts.auth_ns,
        second_factor.ns,
        accounts.me_ns,
        accounts.users_ns,
        care.ns,
        patients.ns,
        mood.ns,
        sessions.ns,
        due.ns,
        assessments.ns,
        instruments.ns,
        instruments.definitions_ns,
        trends.ns,
        audit.ns,
        reports.ns,
        reports.export_ns,
        alerts.ns,
        erasure.ns,
        webhooks.ns,
        organisations.ns,
        organisations.accept_ns,
        emergency.ns,
    ):
        api.add_namespace(namespace)
    api.init_app(app, add_specs=False)
    return api
