"""Invites, care links."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_restx import Namespace, Resource
from sqlalchemy.orm import aliased

from api.auth import current_principal, require_auth
from api.db import get_db
from api.errors import not_found
from api.http import empty_response, json_response, keyset_page, load_body, path_id
from models.accounts import Role, User
from models.base import utcnow
from models.care import (
    CareLink,
    accept_invite,
    create_invite,
    end_link,
    invite_organisation,
    links_of,
)
from schemas.care import CareLinkIn, CareLinkListOut, CareLinkOut, InviteIn, InviteOut

ns = Namespace("care", path="/", description="Invites and care links")
_invite_in, _invite_out, _link_in = InviteIn(), InviteOut(), CareLinkIn()
_link_out, _link_list_out = CareLinkOut(), CareLinkListOut()


def _person(user: User) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name, "role": user.role.value}


def _link_view(link: CareLink, patient: User, clinician: User) -> dict[str, Any]:
    return {
        "id": link.id,
        "patient": _person(patient),
        "clinician": _person(clinician),
        "organisation_id": link.organisation_id,
        "created_at": link.created_at,
    }


@ns.route("/invites")
class Invites(Resource):
    @require_auth(Role.clinician)
    def post(self) -> Response:
        """A one-time code (7-day expiry) a patient enters to link with the caller, in one
        of the caller's organisations (named in the body when they work in several)."""
        # The body is optional: a clinician of one organisation sends none.
        data = load_body(_invite_in) if request.get_data(cache=True) else {"organisation_id": None}
        db = get_db()
        clinician = current_principal().user
        organisation_id = invite_organisation(
            db=db, clinician=clinician, organisation_id=data["organisation_id"]
        )
        invite, code = create_invite(
            db=db, clinician=clinician, organisation_id=organisation_id, now=utcnow()
        )
        db.commit()
        body = _invite_out.dump(
            {
                "id": invite.id,
                "organisation_id": invite.organisation_id,
                "code": code,
                "expires_at": invite.expires_at,
            }
        )
        return json_response(body, 201)


@ns.route("/care-links")
class CareLinks(Resource):
    @require_auth(Role.patient)
    def post(self) -> Response:
        """Link the calling patient to the clinician whose code this is."""
        data = load_body(_link_in)
        db = get_db()
        patient = current_principal().user
        link = accept_invite(db=db, patient=patient, code=data["code"], now=utcnow())
        db.commit()
        clinician = db.get(User, link.clinician_id)
        if clinician is None:  # deleted between commit and read
            raise not_found()
        return json_response(_link_out.dump(_link_view(link, patient, clinician)), 201)

    @require_auth(Role.patient, Role.clinician)
    def get(self) -> Response:
        """The caller's live links, newest first."""
        patient, clinician = aliased(User), aliased(User)
        stmt = (
            links_of(current_principal().user)
            .join(patient, patient.id == CareLink.patient_id)
            .join(clinician, clinician.id == CareLink.clinician_id)
            .add_columns(patient, clinician)
        )
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(CareLink.created_at, CareLink.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
        )
        items = [_link_view(link, p, c) for link, p, c in rows]
        return json_response(_link_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/care-links/<link_id>")
class CareLinkItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    def delete(self, link_id: str) -> Response:
        """End a link; the clinician loses access from the next request."""
        db = get_db()
        end_link(db=db, user=current_principal().user, link_id=path_id(link_id), now=utcnow())
        db.commit()
        return empty_response()
