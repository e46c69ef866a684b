"""Patients as their care team sees them."""

from __future__ import annotations

import uuid
from dataclasses import asdict

from flask import Response, request
from flask_restx import Namespace, Resource
from sqlalchemy import select

from api.audit import note_patients
from api.auth import current_principal, require_auth, resolve_patient_id
from api.contract import Reply, operation
from api.db import get_db, settings
from api.errors import not_found, validation_error
from api.http import decode_cursor, encode_cursor, json_response, page_limit
from models.accounts import Role, User
from models.base import utcnow
from models.care import CareLink, visible_link
from models.cohort import SORTS, cohort_page
from models.organisations import clinician_organisations
from schemas.accounts import CohortOut, PatientOut
from schemas.common import fits_sql_integer

ns = Namespace("patients", path="/patients", description="Patients")
_patient_out, _cohort_out = PatientOut(), CohortOut()


def _organisation_filter() -> uuid.UUID | None:
    """The ``organisation_id`` query parameter: one of the caller's organisations, else 422."""
    raw = request.args.get("organisation_id")
    if raw is None:
        return None
    try:
        organisation_id = uuid.UUID(raw)
    except ValueError:
        raise validation_error({"organisation_id": ["Must be a UUID."]}) from None
    if organisation_id not in clinician_organisations(db=get_db(), user_id=current_principal().id):
        raise validation_error(
            {"organisation_id": ["Not an organisation where you work as a clinician."]}
        )
    return organisation_id


@ns.route("")
class Patients(Resource):
    @require_auth(Role.clinician)
    @operation(
        operation_id="listPatients",
        tag="patients",
        replies=[
            Reply(200, "One page of the cohort.", schema=CohortOut),
        ],
        problems=(401, 403, 422, 503, 500),
        parameters=(
            "ListPatientsOrganisationId",
            "ListPatientsSort",
            "ListPatientsNeedsAttention",
            "Limit",
            "Cursor",
        ),
    )
    def get(self) -> Response:
        """My patients (the cohort)

        Clinician only. One row per linked patient: latest PHQ-9 (value, band, local date),
        PHQ-9 baseline, current and change (as the trend summary defines them), response,
        remission, sessions completed, last session start, last mood entry, adherence over
        the last 14 local dates of the patient's time zone, and open alerts. A page costs a
        fixed number of SQL statements whatever the cohort's size. Ordered by computed
        columns, so the cursor is a position in the ordering: it is valid only with the same
        `sort`, `needs_attention` and `organisation_id` (else 422). Only patients linked to
        the caller in organisations where they are an active clinician; `organisation_id`
        narrows it to one of them.
        """
        sort = request.args.get("sort", "-open_alerts")
        if sort.lstrip("-") not in SORTS:
            raise validation_error(
                {"sort": [f"Must be one of {', '.join(SORTS)}, with - for descending."]}
            )
        raw_attention = request.args.get("needs_attention")
        if raw_attention not in (None, "true", "false"):
            raise validation_error({"needs_attention": ["Must be true or false."]})
        attention = None if raw_attention is None else raw_attention == "true"
        organisation_id = _organisation_filter()
        raw_organisation = str(organisation_id) if organisation_id else None
        limit = page_limit()
        # The cohort is ordered by computed columns, so the cursor is a position in it.
        cursor = decode_cursor(arity=4)
        offset = 0
        if cursor is not None:
            if cursor[1:] != [sort, raw_attention, raw_organisation] or not (
                fits_sql_integer(cursor[0], big=True) and cursor[0] >= 0
            ):
                raise validation_error({"cursor": ["Not a cursor for this sort and filter."]})
            offset = cursor[0]
        rows, more = cohort_page(
            db=get_db(),
            clinician_id=current_principal().id,
            now=utcnow(),
            rules=settings().rules,
            sort=sort,
            needs_attention=attention,
            offset=offset,
            limit=limit,
            organisation_id=organisation_id,
        )
        note_patients(row.patient_id for row in rows)
        items = [{**asdict(row), "id": row.patient_id} for row in rows]
        position = [offset + limit, sort, raw_attention, raw_organisation]
        body = {
            "items": items,
            "next_cursor": encode_cursor(position) if more else None,
            "ruleset_version": settings().rules.version,
        }
        return json_response(_cohort_out.dump(body))


@ns.route("/<patient_id>")
class PatientItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getPatient",
        tag="patients",
        replies=[
            Reply(200, "The profile.", schema=PatientOut),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str) -> Response:
        """A patient's profile

        The patient themself (`me` or their id) or a clinician linked to them. Everyone else,
        and any id that is not a patient, gets 404. `linked_since` is null for the patient's
        own view.
        """
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
                    CareLink.patient_id == patient.id, visible_link(principal.id)
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
