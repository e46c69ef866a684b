"""Invites, care links."""

from __future__ import annotations

from flask import Response, request
from flask_restx import Namespace, Resource
from sqlalchemy.orm import aliased

from api.auth import current_principal, require_auth
from api.contract import Reply, operation
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
from schemas.common import Read

ns = Namespace("care", path="/", description="Invites and care links")
_invite_in, _invite_out, _link_in = InviteIn(), InviteOut(), CareLinkIn()
_link_out, _link_list_out = CareLinkOut(), CareLinkListOut()


def _link_read(link: CareLink, patient: User, clinician: User) -> Read:
    """A care link with the two people it links (PersonOut dumps the users)."""
    return Read(link, {"patient": patient, "clinician": clinician})


@ns.route("/invites")
class Invites(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="createInvite",
        tag="care",
        replies=[
            Reply(201, "The new invite.", schema=InviteOut),
        ],
        problems=(401, 400, 403, 413, 415, 422, 429, 500),
        body=InviteIn,
        body_required=False,
    )
    def post(self) -> Response:
        """Create an invite code

        Clinician only. A one-time code, valid for 7 days, that a patient enters at
        `POST /api/v1/care-links` to link with the caller in one of the caller's
        organisations: the link belongs to that organisation. The body is optional for a
        clinician of one organisation; one who works in several names it
        (`organisation_id`, else 422). 403 for a staff account that is no organisation's
        clinician. The code is shown only in this response.
        """
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
    @operation(
        operation_id="createCareLink",
        tag="care",
        replies=[
            Reply(201, "The new link.", schema=CareLinkOut),
            Reply(
                404,
                "The clinician's account vanished while linking (a race).",
                schema={"$ref": "#/components/schemas/Problem"},
                media="application/problem+json",
            ),
        ],
        problems=(400, 401, 403, 409, 413, 415, 422, 429, 500),
        body=CareLinkIn,
    )
    def post(self) -> Response:
        """Link to a clinician

        Patient only. Spends the clinician's invite code (case, spaces and dashes ignored);
        an unknown, used or expired code is 422 on `code`. 409 when already linked to that
        clinician.
        """
        data = load_body(_link_in)
        db = get_db()
        patient = current_principal().user
        link = accept_invite(db=db, patient=patient, code=data["code"], now=utcnow())
        db.commit()
        clinician = db.get(User, link.clinician_id)
        if clinician is None:  # deleted between commit and read
            raise not_found()
        return json_response(_link_out.dump(_link_read(link, patient, clinician)), 201)

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="listCareLinks",
        tag="care",
        replies=[
            Reply(200, "One page of links.", schema=CareLinkListOut),
        ],
        problems=(401, 403, 422, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self) -> Response:
        """My care links

        Patient or clinician. The caller's live links, newest first, paged.
        """
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
        items = [_link_read(link, p, c) for link, p, c in rows]
        return json_response(_link_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/care-links/<link_id>")
class CareLinkItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="endCareLink",
        tag="care",
        replies=[
            Reply(204, "Link ended."),
        ],
        problems=(401, 403, 404, 429, 500),
    )
    def delete(self, link_id: str) -> Response:
        """End a care link

        Patient or clinician party to the link. The clinician loses access from the next
        request. 404 for a link that is unknown, already ended, or someone else's.
        """
        db = get_db()
        end_link(db=db, user=current_principal().user, link_id=path_id(link_id), now=utcnow())
        db.commit()
        return empty_response()
