"""The patient's access log and the admin's audit search."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import aliased

from api.auth import require_auth, resolve_patient_for_write
from api.contract import Reply, operation
from api.db import get_db
from api.errors import validation_error
from api.http import json_response, keyset_page
from api.query import date_range
from models.accounts import Role, User
from models.audit import AuditEvent, AuditSubject
from schemas.audit import AccessLogOut, AuditEventListOut
from schemas.common import query_text

ns = Namespace("audit", path="/", description="Access log and audit trail")
_access_out, _events_out = AccessLogOut(), AuditEventListOut()


@ns.route("/patients/<patient_id>/access-log")
class AccessLog(Resource):
    @require_auth(Role.patient)
    @operation(
        operation_id="getAccessLog",
        tag="privacy",
        replies=[
            Reply(200, "One page of the access log.", schema=AccessLogOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self, patient_id: str) -> Response:
        """Who read or changed my data, and when

        The patient only (`me` or their own id; clinicians and admins 403; anyone else 404).
        Every audited read and write of the patient's data, newest first: when, who (display
        name and role; null name once that account is erased), what action on which kind of
        record, and the outcome. Reading the log is itself recorded.
        """
        pid = resolve_patient_for_write(patient_id)
        me = select(AuditSubject.pseudonym).where(AuditSubject.user_id == pid)
        actor_subject = aliased(AuditSubject)
        stmt = (
            select(AuditEvent, User.display_name)
            .outerjoin(actor_subject, actor_subject.pseudonym == AuditEvent.actor)
            .outerjoin(User, User.id == actor_subject.user_id)
            .where(AuditEvent.patient.in_(me.scalar_subquery()))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        )
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(AuditEvent.at, AuditEvent.id),
            key_of=lambda row: (row[0].at, row[0].id),
        )
        items = [
            {
                "at": event.at,
                "actor_display_name": name,
                "actor_role": event.actor_role,
                "action": event.action,
                "resource_type": event.resource_type,
                "outcome": event.outcome,
                "emergency_access": event.emergency,
            }
            for event, name in rows
        ]
        return json_response(_access_out.dump({"items": items, "next_cursor": next_cursor}))


def _uuid_arg(name: str) -> uuid.UUID | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise validation_error({name: ["Must be a UUID."]}) from None


@ns.route("/audit-events")
class AuditEvents(Resource):
    @require_auth(Role.admin)
    @operation(
        operation_id="listAuditEvents",
        tag="privacy",
        replies=[
            Reply(200, "One page of audit records.", schema=AuditEventListOut),
        ],
        problems=(401, 403, 422, 500),
        parameters=(
            "ListAuditEventsPatientId",
            "ListAuditEventsActorId",
            "ListAuditEventsAction",
            "ListAuditEventsFrom",
            "ListAuditEventsTo",
            "Limit",
            "Cursor",
        ),
    )
    def get(self) -> Response:
        """Search the audit trail (admin)

        Admins only (everyone else 403). Audit rows hold pseudonyms, never user ids; the ids
        shown are resolved through the pseudonym table and are null once a user is erased.
        Filters combine; `from` and `to` are UTC dates, both inclusive.
        """
        actor_subject, patient_subject = aliased(AuditSubject), aliased(AuditSubject)
        stmt = (
            select(AuditEvent, actor_subject.user_id, patient_subject.user_id)
            .outerjoin(actor_subject, actor_subject.pseudonym == AuditEvent.actor)
            .outerjoin(patient_subject, patient_subject.pseudonym == AuditEvent.patient)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        )
        patient_id, actor_id = _uuid_arg("patient_id"), _uuid_arg("actor_id")
        if patient_id is not None:
            stmt = stmt.where(patient_subject.user_id == patient_id)
        if actor_id is not None:
            stmt = stmt.where(actor_subject.user_id == actor_id)
        action = request.args.get("action")
        if action is not None:
            try:
                action = query_text(action)[:32]
            except ValidationError as exc:
                raise validation_error({"action": list(exc.messages)}) from None
            stmt = stmt.where(AuditEvent.action == action)
        date_from, date_to = date_range()
        if date_from is not None:
            stmt = stmt.where(AuditEvent.at >= datetime.combine(date_from, time.min, UTC))
        if date_to is not None:
            stmt = stmt.where(AuditEvent.at <= datetime.combine(date_to, time.max, UTC))
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(AuditEvent.at, AuditEvent.id),
            key_of=lambda row: (row[0].at, row[0].id),
        )
        items: list[dict[str, Any]] = [
            {
                "id": event.id,
                "at": event.at,
                "actor": event.actor,
                "actor_id": actor,
                "actor_role": event.actor_role,
                "patient": event.patient,
                "patient_id": patient,
                "action": event.action,
                "resource_type": event.resource_type,
                "resource_id": event.resource_id,
                "outcome": event.outcome,
                "request_id": event.request_id,
                "client_address": event.client_address,
                "emergency": event.emergency,
            }
            for event, actor, patient in rows
        ]
        return json_response(_events_out.dump({"items": items, "next_cursor": next_cursor}))
