"""Security headers on every response: what a browser may do with what this service sends."""

from __future__ import annotations

import base64
import hashlib

from flask import Flask, Response, request

from api.config import Settings

# API responses (JSON, problem+json, CSV, SVG, YAML) load nothing and run nothing, and no
# page may frame them.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# A year: browsers remember to use HTTPS only. No includeSubDomains: the operator's other
# hosts are not ours to decide.
HSTS = "max-age=31536000"
# On every response.
FIXED = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def docs_policy(inline_script: str) -> str:
    """The policy of /docs: Swagger UI from this origin, the one inline script that starts
    it (by its hash), the contract and "Try it out" requests to this origin only."""
    digest = base64.b64encode(hashlib.sha256(inline_script.encode()).digest()).decode()
    return (
        "default-src 'none'; "
        f"script-src 'self' 'sha256-{digest}'; "
        # Swagger UI styles through the CSSOM, which style-src does not govern; its CSS embeds
        # its icons as data: images.
        "style-src 'self'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def install_security_headers(app: Flask, settings: Settings) -> None:
    """Add the headers to every response, errors included."""
    production = settings.env == "production"

    @app.after_request
    def _secure(response: Response) -> Response:
        headers = response.headers
        # Added, not set: no view sends these (a test checks each appears once), and set()
        # searches the list for an earlier value first.
        headers.extend(FIXED)
        # /docs sets its own.
        if "Content-Security-Policy" not in headers:
            headers.add("Content-Security-Policy", API_POLICY)
        # Behind TLS (directly, or a trusted proxy's X-Forwarded-Proto through ProxyFix); in
        # production always, since browsers ignore it over plain HTTP (RFC 6797 §8.1) and a
        # TLS proxy that is not declared trusted must not cost the header.
        if production or request.is_secure:
            headers.add("Strict-Transport-Security", HSTS)
        return response
