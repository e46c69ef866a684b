"""JSON-lines logging: method, route template, status, latency and request id; never bodies,
query strings, tokens or health data."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson
from flask import Flask, Response, g, request

log = logging.getLogger("moodtrack")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; only the message and whitelisted ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        try:
            # orjson: a fifth of json's time, and every request writes a line.
            return orjson.dumps(entry).decode()
        except TypeError:
            # What orjson refuses (a lone surrogate, an unknown type), json writes escaped.
            return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: str) -> None:
    """Send the app's log to stderr as JSON lines (idempotent)."""
    if not any(getattr(h, "_moodtrack", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._moodtrack = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def install_request_hooks(app: Flask) -> None:
    """Request id and one access-log line per request (security headers: api.headers)."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # Added, not set: only this hook sends it (set() searches the list first).
        response.headers.add("X-Request-ID", g.get("request_id", ""))
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        rule = request.url_rule.rule if request.url_rule is not None else None
        latency_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "route": rule,
                    "status": response.status_code,
                    "latency_ms": round(latency_ms, 2),
                    "request_id": g.get("request_id"),
                }
            },
        )
        return response
