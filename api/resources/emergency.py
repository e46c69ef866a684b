"""Emergency access: a clinician opens a patient's record; the organisation's admins review."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource

from api.audit import note_emergency, note_patients
from api.auth import current_principal, organisation_as_admin, require_auth
from api.db import get_db, settings
from api.errors import not_found, validation_error
from api.http import json_response, keyset_page, load_body, path_id
from models.accounts import Role
from models.base import utcnow
from models.emergency import EmergencyAccess, mark_reviewed, open_emergency_access, review_list
from models.errors import NotFound
from schemas.emergency import (
    EmergencyAccessIn,
    EmergencyAccessOut,
    EmergencyAccessReviewListOut,
    EmergencyAccessReviewOut,
)

ns = Namespace("emergency", path="/", description="Emergency access")
_in, _out = EmergencyAccessIn(), EmergencyAccessOut()
_review_out, _review_list_out = EmergencyAccessReviewOut(), EmergencyAccessReviewListOut()


@ns.route("/patients/<patient_id>/emergency-access")
class OpenEmergencyAccess(Resource):
    @require_auth(Role.clinician)
    def post(self, patient_id: str) -> Response:
        """Open a patient's record for a stated reason and a limited time (audited)."""
        if patient_id == "me":
            raise not_found()
        pid = path_id(patient_id)
        data = load_body(_in)
        db = get_db()
        try:
            grant = open_emergency_access(
                db=db,
                clinician=current_principal().user,
                patient_id=pid,
                organisation_id=data["organisation_id"],
                reason=data["reason"],
                duration=settings().emergency_access_duration,
                now=utcnow(),
            )
        except NotFound:
            raise not_found() from None
        note_patients([pid])
        note_emergency()
        db.commit()
        body = {
            "id": grant.id,
            "patient_id": grant.patient_id,
            "organisation_id": grant.organisation_id,
            "started_at": grant.started_at,
            "expires_at": grant.expires_at,
        }
        return json_response(_out.dump(body), 201)


def _review_view(grant: EmergencyAccess, patient: str, clinician: str) -> dict[str, Any]:
    return {
        "id": grant.id,
        "organisation_id": grant.organisation_id,
        "patient_id": grant.patient_id,
        "patient_display_name": patient,
        "clinician_id": grant.clinician_id,
        "clinician_display_name": clinician,
        "reason": grant.reason,
        "started_at": grant.started_at,
        "expires_at": grant.expires_at,
        "active": grant.expires_at > utcnow(),
        "reviewed": grant.reviewed_at is not None,
        "reviewed_at": grant.reviewed_at,
        "reviewed_by_id": grant.reviewed_by_id,
    }


def _reviewed_filter() -> bool | None:
    raw = request.args.get("reviewed")
    if raw not in (None, "true", "false"):
        raise validation_error({"reviewed": ["Must be true or false."]})
    return None if raw is None else raw == "true"


@ns.route("/organisations/<organisation_id>/emergency-accesses")
class EmergencyAccesses(Resource):
    @require_auth(Role.clinician)
    def get(self, organisation_id: str) -> Response:
        """The organisation's emergency accesses for its admins to review, newest first."""
        organisation = organisation_as_admin(organisation_id)
        stmt = review_list(organisation_id=organisation.id, reviewed=_reviewed_filter())
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(EmergencyAccess.started_at, EmergencyAccess.id),
            key_of=lambda row: (row[0].started_at, row[0].id),
        )
        # The list names patients: a read about each, in their access logs.
        note_patients(grant.patient_id for grant, _p, _c in rows)
        items = [_review_view(*row) for row in rows]
        return json_response(_review_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/organisations/<organisation_id>/emergency-accesses/<access_id>/review")
class ReviewEmergencyAccess(Resource):
    @require_auth(Role.clinician)
    def post(self, organisation_id: str, access_id: str) -> Response:
        """Mark an emergency access reviewed (once; 409 the second time)."""
        organisation = organisation_as_admin(organisation_id)
        db = get_db()
        grant, patient, clinician = mark_reviewed(
            db=db,
            organisation_id=organisation.id,
            access_id=path_id(access_id),
            reviewer=current_principal().user,
            now=utcnow(),
        )
        note_patients([grant.patient_id])
        db.commit()
        return json_response(_review_out.dump(_review_view(grant, patient, clinician)))
