"""GET .../due: what the phone should ask for now and next."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth, resolve_patient_for_write
from api.db import get_db
from api.http import json_response
from models.accounts import Role
from models.base import utcnow
from models.due import due_items, last_questionnaire_at
from schemas.due import DueListOut

ns = Namespace("due", path="/patients", description="The phone's due list")
_out = DueListOut()


@ns.route("/<patient_id>/due")
class Due(Resource):
    @require_auth(Role.patient)
    def get(self, patient_id: str) -> Response:
        """Daily mood, PHQ-9 every 14 days and check-ins around sessions, in the patient's
        time zone."""
        pid = resolve_patient_for_write(patient_id)
        patient = current_principal().user
        db = get_db()
        now = utcnow()
        items = due_items(
            db=db,
            patient=patient,
            now=now,
            last_questionnaire=lambda code: last_questionnaire_at(db=db, patient_id=pid, code=code),
        )
        body = {
            "timezone": patient.timezone,
            "generated_at": now,
            "items": [asdict(item) for item in items],
        }
        return json_response(_out.dump(body))
