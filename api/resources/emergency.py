"""Emergency access: a clinician opens a patient's record; the organisation's admins review."""

from __future__ import annotations

from flask import Response, request
from flask_restx import Namespace, Resource

from api.audit import note_emergency, note_patients
from api.auth import current_principal, organisation_as_admin, require_auth
from api.contract import Reply, operation
from api.db import get_db, settings
from api.errors import not_found, validation_error
from api.http import json_response, keyset_page, load_body, path_id
from models.accounts import Role
from models.base import utcnow
from models.emergency import EmergencyAccess, mark_reviewed, open_emergency_access, review_list
from models.errors import NotFound
from schemas.common import Read
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
    @operation(
        operation_id="openEmergencyAccess",
        tag="patients",
        replies=[
            Reply(
                201, "The emergency access, running until `expires_at`.", schema=EmergencyAccessOut
            ),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        body=EmergencyAccessIn,
    )
    def post(self, patient_id: str) -> Response:
        """Emergency access to a patient's record

        Break-glass. A clinician of an organisation the patient is cared for in (a live care link
        there), who is not linked to the patient, opens the patient's record for a stated
        `reason` (kept in the audit trail only: shown to the organisation's admins who review it,
        never to the patient, never logged) for `MOODTRACK_EMERGENCY_ACCESS_MINUTES` (default
        60). Meanwhile the clinician may do what a linked clinician may on the patient's routes;
        every such request is audited as emergency access and shows so in the patient's access
        log; the organisation's admins get it to review (`GET
        /api/v1/organisations/{organisation_id}/emergency-accesses`). It ends by itself, or
        earlier when the clinician leaves the organisation or the patient's links there end.
        Outside the caller's organisations, as for a patient that does not exist: 404. 409 when
        the caller can see the patient already (a link, or a running emergency access); 422 on
        `organisation_id` when the patient is cared for in several of the caller's organisations
        and none is named.
        """
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


def _review_read(grant: EmergencyAccess, patient: str, clinician: str) -> Read:
    """An emergency access as the org admins review it: the grant, the two names, and
    whether it still runs and has been reviewed."""
    extra = {
        "patient_display_name": patient,
        "clinician_display_name": clinician,
        "active": grant.expires_at > utcnow(),
        "reviewed": grant.reviewed_at is not None,
    }
    return Read(grant, extra)


def _reviewed_filter() -> bool | None:
    raw = request.args.get("reviewed")
    if raw not in (None, "true", "false"):
        raise validation_error({"reviewed": ["Must be true or false."]})
    return None if raw is None else raw == "true"


@ns.route("/organisations/<organisation_id>/emergency-accesses")
class EmergencyAccesses(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="listEmergencyAccesses",
        tag="organisations",
        replies=[
            Reply(200, "One page.", schema=EmergencyAccessReviewListOut),
        ],
        problems=(401, 403, 404, 422, 500),
        parameters=("ListEmergencyAccessesReviewed", "Limit", "Cursor"),
    )
    def get(self, organisation_id: str) -> Response:
        """Emergency accesses to review

        Org admins of the organisation only: every emergency access opened in it, newest first,
        with the reason, whether it is still running, and whether it has been reviewed
        (`reviewed=false` for the ones still to review). Each patient named is recorded as read in
        their access log. 403 and 404 as for the member list.
        """
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
        items = [_review_read(*row) for row in rows]
        return json_response(_review_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/organisations/<organisation_id>/emergency-accesses/<access_id>/review")
class ReviewEmergencyAccess(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="reviewEmergencyAccess",
        tag="organisations",
        replies=[
            Reply(200, "The reviewed access.", schema=EmergencyAccessReviewOut),
        ],
        problems=(401, 403, 404, 409, 429, 500),
    )
    def post(self, organisation_id: str, access_id: str) -> Response:
        """Mark an emergency access reviewed

        Org admins of the organisation only; no body. Once: 409 the second time. 404 for an
        access of another organisation.
        """
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
        return json_response(_review_out.dump(_review_read(grant, patient, clinician)))
