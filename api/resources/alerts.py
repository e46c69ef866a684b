"""The clinician's alerts inbox: all linked patients', one patient's, and acknowledging one."""

from __future__ import annotations

import uuid

from flask import Response, request
from flask_restx import Namespace, Resource

from api.audit import note_patients
from api.auth import current_principal, require_auth, resolve_patient_id
from api.contract import Reply, operation
from api.db import get_db
from api.errors import validation_error
from api.http import json_response, keyset_page, load_body, path_id
from models.accounts import Role
from models.alerts import (
    ALERT_STATUSES,
    PRIORITY_RANK,
    Alert,
    acknowledge_alert,
    alerts_for_clinician,
    get_alert_for_clinician,
    priority_rank,
)
from models.base import utcnow
from schemas.common import Read
from schemas.inbox import AlertAcknowledgeIn, AlertInboxOut, AlertListOut

ns = Namespace("alerts", path="/", description="Clinician alerts")
_item_out, _list_out, _ack_in = AlertInboxOut(), AlertListOut(), AlertAcknowledgeIn()


def _alert_read(alert: Alert, display_name: str) -> Read:
    """An alert as the inbox shows it: the row and the patient's display name."""
    return Read(alert, {"patient_display_name": display_name})


def _status() -> str:
    status = request.args.get("status", "open")
    if status not in ALERT_STATUSES:
        raise validation_error({"status": [f"Must be one of {', '.join(ALERT_STATUSES)}."]})
    return status


def _page(patient_id: uuid.UUID | None) -> Response:
    stmt = alerts_for_clinician(
        clinician_id=current_principal().id, status=_status(), patient_id=patient_id
    )
    rows, next_cursor = keyset_page(
        get_db(),
        stmt,
        keys=(priority_rank, Alert.created_at, Alert.id),
        key_of=lambda row: (PRIORITY_RANK.get(row[0].priority, 0), row[0].created_at, row[0].id),
    )
    # A page touching several patients is a read of each one's data (audited per patient).
    note_patients(alert.patient_id for alert, _name in rows)
    items = [_alert_read(alert, name) for alert, name in rows]
    return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/alerts")
class Alerts(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="listAlerts",
        tag="alerts",
        replies=[
            Reply(200, "One page of alerts.", schema=AlertListOut),
        ],
        problems=(401, 403, 422, 503, 500),
        parameters=("AlertStatus", "Limit", "Cursor"),
    )
    def get(self) -> Response:
        """My alerts inbox

        Clinician only (other roles 403). Alerts of every patient the caller is linked to
        now, most urgent first (`high`, then `medium`), then newest; each names its patient
        (`patient_id`, `patient_display_name`), rule, priority, triggering record
        (`source_type`, `source_id`) and `details` (numbers and codes only, never free
        text). `status` is `open` (default), `acknowledged` or `all`; anything else is 422.
        Alerts of a patient whose link has ended disappear from the inbox.
        """
        return _page(None)


@ns.route("/patients/<patient_id>/alerts")
class PatientAlerts(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="listPatientAlerts",
        tag="alerts",
        replies=[
            Reply(200, "One page of the patient's alerts.", schema=AlertListOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("AlertStatus", "Limit", "Cursor"),
    )
    def get(self, patient_id: str) -> Response:
        """A patient's alerts

        A clinician linked to the patient; any other patient id is 404. Patients get 403,
        their own alerts included: alerts are the care team's triage list, and a patient
        was already shown the crisis information when the triggering answer was stored (and
        gets their alerts in `GET /api/v1/me/export`). Same order, `status` and paging as
        `GET /api/v1/alerts`.
        """
        return _page(resolve_patient_id(patient_id))


@ns.route("/alerts/<alert_id>")
class AlertItem(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="getAlert",
        tag="alerts",
        replies=[
            Reply(200, "The alert.", schema=AlertInboxOut),
        ],
        problems=(401, 403, 404, 500, 503),
    )
    def get(self, alert_id: str) -> Response:
        """One alert

        Clinician linked to the alert's patient now (other roles 403; any other alert 404). The
        link that alert emails and webhook payloads carry. An alert is one per triggering record
        and rule; `escalated_at` is set once if a high-priority alert was left unacknowledged past
        the escalation time (`MOODTRACK_ESCALATION_MINUTES`).
        """
        alert, name = get_alert_for_clinician(
            db=get_db(), clinician_id=current_principal().id, alert_id=path_id(alert_id)
        )
        note_patients([alert.patient_id])
        return json_response(_item_out.dump(_alert_read(alert, name)))


@ns.route("/alerts/<alert_id>/acknowledge")
class AlertAcknowledge(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="acknowledgeAlert",
        tag="alerts",
        replies=[
            Reply(200, "The acknowledged alert.", schema=AlertInboxOut),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        body=AlertAcknowledgeIn,
        body_required=False,
    )
    def post(self, alert_id: str) -> Response:
        """Acknowledge an alert

        A clinician linked to the alert's patient now; an alert of any other patient is 404,
        exactly as if it did not exist. Once only: a second acknowledgement, by anyone, is
        409 (two clinicians at the same moment: one wins, the other gets 409). The body is
        optional: `{}` or no body at all acknowledges without a note; `note` is at most
        2000 characters. The alert stays visible with `status=acknowledged` or `all`.
        """
        parsed = path_id(alert_id)
        # The note is optional, so an empty body is an acknowledgement without one.
        data = load_body(_ack_in) if request.get_data(cache=True) else {"note": None}
        db = get_db()
        alert, name = acknowledge_alert(
            db=db,
            clinician_id=current_principal().id,
            alert_id=parsed,
            note=data["note"],
            now=utcnow(),
        )
        note_patients([alert.patient_id])
        db.commit()
        return json_response(_item_out.dump(_alert_read(alert, name)))
