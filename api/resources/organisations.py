"""Organisations (the operator's), their staff (the org admins'), and taking up a staff invite."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_restx import Namespace, Resource
from sqlalchemy import select

from api.audit import note_actor
from api.auth import current_principal, organisation_as_admin, require_auth
from api.contract import Reply, operation
from api.db import get_db
from api.errors import not_found
from api.http import (
    empty_response,
    json_response,
    keyset_page,
    load_body,
    path_id,
    require_if_match,
)
from models.accounts import Role, User
from models.base import utcnow
from models.care import end_clinician_links
from models.organisations import (
    MemberRole,
    Membership,
    Organisation,
    accept_staff_invite,
    active_member_count,
    change_member,
    create_organisation,
    create_staff_invite,
    member_or_404,
    remove_member,
    rename_organisation,
)
from models.second_factor import has_second_factor, reset_second_factor, second_factor_on
from schemas.common import Read
from schemas.organisations import (
    MemberListOut,
    MemberOut,
    MemberUpdate,
    OrganisationCreatedOut,
    OrganisationIn,
    OrganisationListOut,
    OrganisationOut,
    OrganisationUpdate,
    StaffInviteAcceptIn,
    StaffInviteIn,
    StaffInviteOut,
)

ns = Namespace("organisations", path="/organisations", description="Organisations and staff")
accept_ns = Namespace("staff-invites", path="/auth/staff-invites", description="Staff invites")
_org_in, _org_update, _org_out = OrganisationIn(), OrganisationUpdate(), OrganisationOut()
_org_created_out, _org_list_out = OrganisationCreatedOut(), OrganisationListOut()
_invite_in, _invite_out, _accept_in = StaffInviteIn(), StaffInviteOut(), StaffInviteAcceptIn()
_member_out, _member_list_out, _member_update = MemberOut(), MemberListOut(), MemberUpdate()


def _organisation_read(organisation: Organisation, members: int | None = None) -> Read:
    """An organisation with its number of active members (counted here when not given)."""
    if members is None:
        members = get_db().scalar(
            select(active_member_count()).where(Organisation.id == organisation.id)
        )
    return Read(organisation, {"members": members or 0})


def member_view(
    membership: Membership, user: User, second_factor: bool | None = None
) -> dict[str, Any]:
    """A membership and its user, for MemberOut."""
    if second_factor is None:
        second_factor = has_second_factor(db=get_db(), user_id=user.id)
    return {
        "user_id": user.id,
        "organisation_id": membership.organisation_id,
        "email": user.email,
        "display_name": user.display_name,
        "role": membership.role,
        "disabled": membership.disabled_at is not None,
        "second_factor": second_factor,
        "created_at": membership.created_at,
    }


def _organisation_or_404(raw: str) -> Organisation:
    organisation = get_db().get(Organisation, path_id(raw))
    if organisation is None:
        raise not_found()
    return organisation


@ns.route("")
class Organisations(Resource):
    @require_auth(Role.admin)
    @operation(
        operation_id="createOrganisation",
        tag="organisations",
        replies=[
            Reply(
                201,
                "The new organisation and its first admin's invite.",
                schema=OrganisationCreatedOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 413, 415, 422, 429, 500),
        body=OrganisationIn,
    )
    def post(self) -> Response:
        """Create an organisation

        Operator (`admin`) only. Creates a clinic and a staff invite for its first org admin
        (`first_admin.email`); the invite's code is shown only in this response, for the operator
        to hand to that person, who takes it up at `POST /api/v1/auth/staff-invites/accept`.
        """
        data = load_body(_org_in)
        db = get_db()
        now = utcnow()
        organisation = create_organisation(db=db, name=data["name"])
        invite, code = create_staff_invite(
            db=db,
            organisation_id=organisation.id,
            email=data["first_admin"]["email"],
            role=MemberRole.org_admin,
            created_by=current_principal().user,
            now=now,
        )
        db.commit()
        counted = _organisation_read(organisation).extra
        body = Read(organisation, {**counted, "first_admin_invite": Read(invite, {"code": code})})
        return json_response(_org_created_out.dump(body), 201, etag=organisation.etag)

    @require_auth(Role.admin)
    @operation(
        operation_id="listOrganisations",
        tag="organisations",
        replies=[
            Reply(200, "One page of organisations.", schema=OrganisationListOut),
        ],
        problems=(401, 403, 422, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self) -> Response:
        """All organisations

        Operator (`admin`) only. Oldest first, with the number of active members.
        """
        rows, next_cursor = keyset_page(
            get_db(),
            select(Organisation, active_member_count()).order_by(
                Organisation.created_at, Organisation.id
            ),
            keys=(Organisation.created_at, Organisation.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
            descending=False,
        )
        items = [_organisation_read(organisation, members) for organisation, members in rows]
        return json_response(_org_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<organisation_id>")
class OrganisationItem(Resource):
    @require_auth(Role.admin)
    @operation(
        operation_id="getOrganisation",
        tag="organisations",
        replies=[
            Reply(
                200,
                "The organisation.",
                schema=OrganisationOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 500),
    )
    def get(self, organisation_id: str) -> Response:
        """One organisation

        Operator (`admin`) only; 404 when there is none.
        """
        organisation = _organisation_or_404(organisation_id)
        return json_response(
            _org_out.dump(_organisation_read(organisation)), etag=organisation.etag
        )

    @require_auth(Role.admin)
    @operation(
        operation_id="updateOrganisation",
        tag="organisations",
        replies=[
            Reply(
                200,
                "The renamed organisation.",
                schema=OrganisationOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=OrganisationUpdate,
    )
    def patch(self, organisation_id: str) -> Response:
        """Rename an organisation

        Operator (`admin`) only. Needs `If-Match` (428 without, 412 stale; checked before the
        body is read).
        """
        organisation = _organisation_or_404(organisation_id)
        require_if_match(organisation.etag)
        data = load_body(_org_update)
        rename_organisation(organisation=organisation, name=data["name"])
        db = get_db()
        db.commit()
        db.refresh(organisation)
        return json_response(
            _org_out.dump(_organisation_read(organisation)), etag=organisation.etag
        )


@ns.route("/<organisation_id>/members")
class Members(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="listMembers",
        tag="organisations",
        replies=[
            Reply(200, "One page of members.", schema=MemberListOut),
        ],
        problems=(401, 403, 404, 422, 500),
        parameters=("Limit", "Cursor"),
    )
    def get(self, organisation_id: str) -> Response:
        """The organisation's staff

        Org admins of the organisation only: its members (clinicians and org admins, disabled
        ones included), oldest first. Another member of the organisation gets 403; anyone outside
        it gets 404, as for an organisation that does not exist; patients and the operator 403.
        """
        organisation = organisation_as_admin(organisation_id)
        stmt = (
            select(Membership, User, second_factor_on(User.id))
            .join(User, User.id == Membership.user_id)
            .where(Membership.organisation_id == organisation.id)
            .order_by(Membership.created_at, Membership.id)
        )
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(Membership.created_at, Membership.id),
            key_of=lambda row: (row[0].created_at, row[0].id),
            descending=False,
        )
        items = [member_view(membership, user, bool(on)) for membership, user, on in rows]
        return json_response(_member_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<organisation_id>/staff-invites")
class StaffInvites(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="createStaffInvite",
        tag="organisations",
        replies=[
            Reply(201, "The new invite.", schema=StaffInviteOut),
        ],
        problems=(400, 401, 403, 404, 413, 415, 422, 429, 500),
        body=StaffInviteIn,
    )
    def post(self, organisation_id: str) -> Response:
        """Invite a staff member

        Org admins of the organisation only. A one-time code, valid for 7 days, for the person
        with this email to join as `clinician` or `org_admin`; the code is shown only in this
        response. They take it up at `POST /api/v1/auth/staff-invites/accept`. 403 and 404 as for
        the member list.
        """
        organisation = organisation_as_admin(organisation_id)
        data = load_body(_invite_in)
        db = get_db()
        invite, code = create_staff_invite(
            db=db,
            organisation_id=organisation.id,
            email=data["email"],
            role=MemberRole(data["role"]),
            created_by=current_principal().user,
            now=utcnow(),
        )
        db.commit()
        return json_response(_invite_out.dump(Read(invite, {"code": code})), 201)


@ns.route("/<organisation_id>/members/<user_id>")
class MemberItem(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="updateMember",
        tag="organisations",
        replies=[
            Reply(
                200,
                "The member.",
                schema=MemberOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 429, 500),
        parameters=("IfMatch",),
        body=MemberUpdate,
    )
    def patch(self, organisation_id: str, user_id: str) -> Response:
        """Change a member's role or disable them

        Org admins of the organisation only. `role` (clinician or org_admin) and/or `disabled`;
        a disabled clinician stops seeing the organisation's patients from the next request. The
        last active org admin cannot be demoted or disabled (409). Needs `If-Match` (the member's
        ETag). 404 for anyone who is not a member of this organisation.
        """
        organisation = organisation_as_admin(organisation_id)
        db = get_db()
        membership, user = member_or_404(
            db=db, organisation_id=organisation.id, user_id=path_id(user_id)
        )
        require_if_match(membership.etag)
        data = load_body(_member_update)
        change_member(
            db=db,
            membership=membership,
            role=MemberRole(data["role"]) if "role" in data else None,
            disabled=data.get("disabled"),
            now=utcnow(),
        )
        db.commit()
        db.refresh(membership)
        return json_response(_member_out.dump(member_view(membership, user)), etag=membership.etag)

    @require_auth(Role.clinician)
    @operation(
        operation_id="removeMember",
        tag="organisations",
        replies=[
            Reply(204, "Removed."),
        ],
        problems=(401, 403, 404, 409, 412, 428, 429, 500),
        parameters=("IfMatch",),
    )
    def delete(self, organisation_id: str, user_id: str) -> Response:
        """Take a member out of the organisation

        Org admins of the organisation only. The membership goes and the member's live care
        links in this organisation end. The last active org admin cannot be removed (409). Needs
        `If-Match` (the member's ETag).
        """
        organisation = organisation_as_admin(organisation_id)
        db = get_db()
        membership, user = member_or_404(
            db=db, organisation_id=organisation.id, user_id=path_id(user_id)
        )
        require_if_match(membership.etag)
        remove_member(db=db, membership=membership)
        end_clinician_links(
            db=db,
            organisation_id=organisation.id,
            clinician_id=user.id,
            ended_by_id=current_principal().id,
            now=utcnow(),
        )
        db.commit()
        return empty_response()


@ns.route("/<organisation_id>/members/<user_id>/2fa")
class MemberSecondFactor(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="resetMemberSecondFactor",
        tag="organisations",
        replies=[
            Reply(204, "Reset."),
        ],
        problems=(401, 403, 404, 429, 500),
    )
    def delete(self, organisation_id: str, user_id: str) -> Response:
        """Reset a member's two-factor sign-in

        Org admins of the organisation only, for a member who lost their authenticator and
        recovery codes: their second factor and recovery codes are deleted and every session of
        theirs ends (refresh tokens and access tokens fail from the next request); they sign in
        with their password and enrol again. Audited (`second_factor_reset`). 403 and 404 as for
        the member list.
        """
        organisation = organisation_as_admin(organisation_id)
        db = get_db()
        _membership, user = member_or_404(
            db=db, organisation_id=organisation.id, user_id=path_id(user_id)
        )
        reset_second_factor(db=db, user_id=user.id, now=utcnow())
        db.commit()
        return empty_response()


@accept_ns.route("/accept")
class StaffInviteAccept(Resource):
    @operation(
        operation_id="acceptStaffInvite",
        tag="organisations",
        replies=[
            Reply(
                201,
                "The new membership.",
                schema=MemberOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 409, 413, 415, 422, 429, 500),
        body=StaffInviteAcceptIn,
        public=True,
    )
    def post(self) -> Response:
        """Take up a staff invite

        No token. Spends a staff invite's code (case, spaces and dashes ignored): without an
        account for the invite's email, one is made with this password (the password policy
        applies), `display_name` (required then) and `timezone`; with a staff account already,
        `password` must be that account's, which then joins the organisation too. An unknown,
        used or expired code is 422 on `code`; an email whose account is a patient's or the
        operator's is 409, as is an account that is already a member.
        """
        data = load_body(_accept_in)
        db = get_db()
        membership, user = accept_staff_invite(
            db=db, passwords=current_app.extensions["moodtrack"].passwords, now=utcnow(), **data
        )
        note_actor(user)
        db.commit()
        return json_response(
            _member_out.dump(member_view(membership, user)), 201, etag=membership.etag
        )
