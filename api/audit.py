"""The audit mechanism every request passes through.

- Writes: when the request's session commits, a ``before_commit`` hook adds the audit rows
  to that same transaction, so a write and its audit record land together or not at all.
- Reads of health data: after the view, the rows are written and committed; if that
  fails, the read answers 503 instead of the data.
- Failures of auth and denied access to a patient are recorded by the error handler.
Views only say which patients a request touched (``resolve_patient_id`` does it for every
patient-scoped route; lists call ``note_patients``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.db import get_db, rollback_request
from api.errors import ApiError, problem_response
from models.accounts import User
from models.audit import Entry, record

log = logging.getLogger("moodtrack")

ACTIONS = {"GET": "read", "POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}
# Endpoints whose action has a name of its own (auth and care-team events).
NAMED_ACTIONS = {
    ("POST", "/auth/register"): "register",
    ("POST", "/auth/register/confirm"): "register_confirmed",
    ("POST", "/auth/login"): "login",
    ("POST", "/auth/refresh"): "refresh",
    ("POST", "/auth/logout"): "logout",
    ("POST", "/me/password"): "password_change",
    ("POST", "/invites"): "invite_created",
    ("POST", "/care-links"): "link_created",
    ("DELETE", "/care-links/<link_id>"): "link_ended",
    ("GET", "/me/export"): "export",
    ("DELETE", "/me"): "erase",
    ("POST", "/alerts/<alert_id>/acknowledge"): "acknowledge",
    ("POST", "/auth/staff-invites/accept"): "staff_invite_accepted",
    ("POST", "/organisations/<organisation_id>/staff-invites"): "staff_invite_created",
    ("POST", "/auth/2fa/enrol"): "second_factor_enrol",
    ("POST", "/auth/2fa/confirm"): "second_factor_on",
    ("POST", "/auth/2fa/verify"): "login_second_factor",
    ("DELETE", "/auth/2fa"): "second_factor_off",
    ("DELETE", "/organisations/<organisation_id>/members/<user_id>/2fa"): "second_factor_reset",
    ("POST", "/patients/<patient_id>/emergency-access"): "emergency_access",
    (
        "POST",
        "/organisations/<organisation_id>/emergency-accesses/<access_id>/review",
    ): "emergency_access_reviewed",
}
API_PREFIX = "/api/v1"
# Suffixes of the routes that give one representation of a resource (``/report.fhir.json``,
# ``/me/export.fhir.json``); ``chart.svg`` is a resource of its own and keeps its name.
REPRESENTATION_SUFFIXES = (".fhir.json", ".csv", ".html")
VERB_SEGMENTS = frozenset({"acknowledge", "batch", "review", "redeliver", "rotate-secret"})
# Path arguments that name an account: recorded by the account's pseudonym, never its id.
ACCOUNT_ARGUMENTS = frozenset({"user_id"})


def note_patients(patient_ids: Iterable[uuid.UUID]) -> None:
    """Say that this request reads or changes these patients' data."""
    noted: list[uuid.UUID] = g.setdefault("audit_patients", [])
    for pid in patient_ids:
        if pid not in noted:
            noted.append(pid)


def note_emergency() -> None:
    """Say that this request reaches the patient through an emergency access."""
    g.audit_emergency = True


def note_created(record_id: uuid.UUID) -> None:
    """Say which record this request created, when a Core INSERT stored it: no ORM flush
    tells ``_after_flush`` (and an alert the create raised may have flushed first)."""
    get_db().info["audit_created_id"] = str(record_id)


def note_actor(user: User) -> None:
    """Say who acted when no bearer token did (login, register)."""
    g.audit_actor = user


def _route() -> str | None:
    """The API route, a typed representation (``/report.csv``) as its resource (``/report``):
    the access log reads the same whichever form was fetched."""
    rule = request.url_rule.rule if request.url_rule is not None else None
    if rule is None or not rule.startswith(API_PREFIX):
        return None
    route = rule[len(API_PREFIX) :]
    for suffix in REPRESENTATION_SUFFIXES:
        if route.endswith(suffix):
            return route.removesuffix(suffix)
    return route


def _resource(route: str) -> tuple[str, str | None, uuid.UUID | None]:
    """('mood-entries', '<id>', None) from '/patients/<patient_id>/mood-entries/<entry_id>';
    an account in the path (``<user_id>``) comes third, for its pseudonym, never second."""
    parts = [p for p in route.split("/") if p]
    statics = [p for p in parts if not p.startswith("<")]
    if len(statics) > 1 and statics[-1] in VERB_SEGMENTS:
        statics = statics[:-1]  # /alerts/<id>/acknowledge acts on an alert
    resource_type = statics[-1] if statics else "api"
    if not parts or not parts[-1].startswith("<") or parts[-1] == "<patient_id>":
        return resource_type, None, None
    name = parts[-1][1:-1].rpartition(":")[2]  # <uuid:entry_id> names entry_id
    value = str((request.view_args or {}).get(name, ""))
    if name in ACCOUNT_ARGUMENTS:
        try:
            return resource_type, None, uuid.UUID(value)
        except ValueError:  # names no account: the view answers 404
            return resource_type, None, None
    return resource_type, value[:64] or None, None


def _entries(
    outcome: str, *, created_id: str | None = None, created_user: uuid.UUID | None = None
) -> list[Entry]:
    route = _route()
    if route is None:
        return []
    action = NAMED_ACTIONS.get((request.method, route), ACTIONS.get(request.method, "other"))
    resource_type, resource_id, resource_user = _resource(route)
    principal = g.get("principal")
    actor = principal if principal is not None else g.get("audit_actor")
    common = {
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id or created_id,
        "resource_user_id": resource_user or created_user,
        "outcome": outcome,
        "actor_id": actor.id if actor is not None else None,
        "actor_role": actor.role.value if actor is not None else None,
        "request_id": g.get("request_id"),
        "client_address": (request.remote_addr or "")[:64] or None,
        "emergency": bool(g.get("audit_emergency")),
    }
    patients = g.get("audit_patients") or [None]
    return [Entry(patient_id=pid, **common) for pid in patients]


def _is_read_of_health_data() -> bool:
    route = _route()
    return request.method == "GET" and (bool(g.get("audit_patients")) or route == "/me/export")


def _before_commit(session: Session) -> None:
    """Add this request's write to the audit trail, inside the same transaction."""
    if not has_request_context() or g.get("db") is not session:
        return
    if request.method == "GET" or g.get("audit_written"):
        return
    outcome = session.info.pop("audit_outcome", "success")
    created = session.info.pop("audit_created_id", None)
    created_user = session.info.pop("audit_created_user", None)
    entries = _entries(outcome, created_id=created, created_user=created_user)
    if entries:
        g.audit_written = True
        record(db=session, entries=entries)
        session.flush()


def _after_flush(session: Session, _context: Any) -> None:
    """Remember the record this request created, for its audit row (an account by its id,
    which the row turns into the account's pseudonym)."""
    if "audit_created_id" in session.info or "audit_created_user" in session.info:
        return
    for obj in session.new:
        if isinstance(obj, User):
            session.info["audit_created_user"] = obj.id
            if has_request_context() and g.get("audit_actor") is None:
                g.audit_actor = obj
            return
        if hasattr(obj, "patient_id"):
            session.info["audit_created_id"] = str(obj.id)
            return


def record_failure(status: int) -> None:
    """Audit a refused auth attempt or a denied access to a patient (error handler)."""
    if not has_request_context() or g.get("audit_written"):
        return
    route = _route()
    if route is None:
        return
    auth_route = (request.method, route) in NAMED_ACTIONS and route.startswith("/auth/")
    denied = (
        status in (403, 404)
        and g.get("principal") is not None
        and ("patient_id" in (request.view_args or {}))
    )
    if not (auth_route and status in (401, 429)) and not denied:
        return
    db = get_db()
    # The error handler rolled the request back; on SQLite the row's transaction takes the
    # write lock at BEGIN, even for a refused read (api.db).
    g.audit_write = True
    # Set before the commit: its before_commit hook would otherwise add a "success" row.
    g.audit_written = True
    try:
        record(db=db, entries=_entries("failure" if auth_route else "denied"))
        db.commit()
    except SQLAlchemyError:
        g.audit_written = False
        db.rollback()
        log.error("audit write failed", extra={"fields": {"request_id": g.get("request_id")}})


def install_audit(app: Flask) -> None:
    """Hook the audit trail into sessions and responses."""
    if not event.contains(Session, "before_commit", _before_commit):
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_flush", _after_flush)

    @app.after_request
    def _audit_reads(response: Response) -> Response:
        if response.status_code >= 400 or not _is_read_of_health_data():
            return response
        db = get_db()
        try:
            # Built first: the rollback below expires the loaded principal.
            entries = _entries("success")
            if db.get_bind().dialect.name == "sqlite":
                # The read ran in autocommit (api.db); end its transaction so the row is
                # written in one that takes the write lock at BEGIN: a deferred one cannot
                # upgrade while other readers are busy. On PostgreSQL the row is written
                # and committed by its own statements.
                rollback_request()
                g.audit_write = True
            record(db=db, entries=entries)
            db.commit()
        except SQLAlchemyError:
            db.rollback()
            log.error("audit write failed", extra={"fields": {"request_id": g.get("request_id")}})
            # No audit record, no data: the read is refused rather than left unrecorded.
            return problem_response(
                ApiError(
                    503,
                    "The request could not be recorded; try again.",
                    slug="unavailable",
                    headers={"Retry-After": "5"},
                )
            )
        return response
