"""Patients as their care team sees them."""

from __future__ import annotations

from flask import Response
from flask_restx import Namespace, Resource
from sqlalchemy import select

from api.auth import current_principal, require_auth, resolve_patient_id
from api.db import get_db
from api.errors import not_found
from api.http import json_response, keyset_page
from models.accounts import Role, User
from models.care import CareLink
from schemas.accounts import PatientListOut, PatientOut

ns = Namespace("patients", path="/patients", description="Patients")
_patient_out, _patient_list_out = PatientOut(), PatientListOut()


@ns.route("")
class Patients(Resource):
    @require_auth(Role.clinician)
    def get(self) -> Response:
        """The caller's linked patients, most recently linked first."""
        stmt = (
            select(User, CareLink.created_at)
            .join(CareLink, CareLink.patient_id == User.id)
            .where(
                CareLink.clinician_id == current_principal().user.id,
                CareLink.ended_at.is_(None),
            )
            .order_by(CareLink.created_at.desc(), User.id.desc())
        )
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(CareLink.created_at, User.id),
            key_of=lambda row: (row[1], row[0].id),
        )
        items = [
            {
                "id": user.id,
                "display_name": user.display_name,
                "timezone": user.timezone,
                "linked_since": since,
            }
            for user, since in rows
        ]
        return json_response(_patient_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<patient_id>")
class PatientItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    def get(self, patient_id: str) -> Response:
        """A patient's profile: the patient themself or a linked clinician."""
        principal = current_principal()
        resolved = resolve_patient_id(patient_id)
        db = get_db()
        patient = db.get(User, resolved)
        if patient is None or patient.role != Role.patient:
            raise not_found()
        since = None
        if principal.role == Role.clinician:
            since = db.scalar(
                select(CareLink.created_at).where(
                    CareLink.patient_id == patient.id,
                    CareLink.clinician_id == principal.user.id,
                    CareLink.ended_at.is_(None),
                )
            )
        body = _patient_out.dump(
            {
                "id": patient.id,
                "display_name": patient.display_name,
                "timezone": patient.timezone,
                "linked_since": since,
            }
        )
        return json_response(body)
