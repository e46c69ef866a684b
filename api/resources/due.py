"""GET .../due: what the phone should ask for now and next."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response
from flask_restx import Namespace, Resource

from api.auth import current_principal, require_auth, resolve_patient_for_write
from api.contract import Reply, operation
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
    @operation(
        operation_id="getDueList",
        tag="mood",
        replies=[
            Reply(200, "The due list.", schema=DueListOut),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str) -> Response:
        """What the phone should ask for now and next

        The patient only (`me` or their own id; a linked clinician or admin gets 403; anyone
        else 404). Items whose window has not ended and starts within 7 days, earliest first:
        `daily_mood` for today and tomorrow as local days of the patient's profile time zone
        (a daylight-saving day is 23 or 25 hours long); `questionnaire` PHQ-9 when none was
        answered in 14 days (else the next one, once it falls within 7 days); `pre_session`
        in the 24 hours before each scheduled session; `post_session_4h` (+2 h to +4 h),
        `post_session_24h` (+12 h to +36 h) and `post_session_7d` (+6 d to +8 d) after each
        completed session: the effect windows of the trend analytics, so a check-in made when
        prompted counts in the session's effect. `done` is true when a mood entry already
        falls inside the window.
        """
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
