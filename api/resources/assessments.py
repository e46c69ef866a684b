"""Questionnaires: patients answer self-report forms, linked clinicians rate the others."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from flask_restx import Namespace, Resource
from sqlalchemy import select

from api.auth import current_principal, require_auth, resolve_patient_id
from api.config import Settings
from api.contract import Reply, operation
from api.db import get_db
from api.errors import validation_error
from api.http import (
    created_response,
    empty_response,
    idempotency_key,
    json_response,
    keyset_page,
    load_body,
    path_id,
    require_if_match,
)
from models.accounts import Role
from models.assessment_writes import create_assessment, delete_assessment
from models.assessments import Assessment, get_assessment
from models.instruments import CATALOGUE
from schemas.assessments import AssessmentIn, AssessmentListOut, AssessmentOut
from schemas.common import Read

ns = Namespace("assessments", path="/patients", description="Questionnaires")
_in, _out, _list_out = AssessmentIn(), AssessmentOut(), AssessmentListOut()


def _settings() -> Settings:
    return current_app.extensions["moodtrack"].settings


def crisis_block(settings: Settings) -> dict[str, Any]:
    """What a positive self-harm item answers at once (clinical.md §6); configurable."""
    return {
        "message": settings.crisis_text,
        "resources": [
            {"name": name, "contact": contact} for name, contact in settings.crisis_resources
        ],
        "monitored_in_real_time": False,
    }


@ns.route("/<patient_id>/assessments")
class Assessments(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="createAssessment",
        tag="assessments",
        replies=[
            Reply(
                200,
                "A replay of an earlier create; the stored assessment, nothing new stored.",
                schema=AssessmentOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
            Reply(
                201,
                "Stored and scored.",
                schema=AssessmentOut,
                headers=("Location", "ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500),
        parameters=("IdempotencyKey",),
        body=AssessmentIn,
    )
    def post(self, patient_id: str) -> Response:
        """Submit a questionnaire

        Self-report instruments (`phq9`, `gad7`, `qids_sr16`) only by the patient themself;
        clinician-rated ones (`madrs`, `cadss`) only by a linked clinician: anyone else who
        can see the patient gets 403, anyone who cannot gets 404.

        Every item must be answered, each a strict integer within its range (`2.5`, `"2"`,
        `true` are 422, reported on `answers.<index>`, index 0 being item 1). The server
        computes `total` (QIDS-SR16 by its domain maxima, never the item sum) and `band`, and
        stores the instrument, scoring and rule-set versions with the answers.

        When PHQ-9 item 9 or QIDS-SR16 item 12 is 1 or more, the response carries a `crisis`
        block and a `self_harm` clinician alert is stored in the same transaction (priority
        `high` from 2, `medium` at 1), whatever the total. A new PHQ-9 may also raise a
        `worsening` alert. **Entries are not monitored in real time.** A null `crisis` says
        nothing about risk.

        A repeat with the same `id` or `Idempotency-Key` and the same body returns the stored
        assessment (200, with its `crisis` block again) and raises no new alert; a different
        body is 409.
        """
        pid = resolve_patient_id(patient_id)
        key = idempotency_key()
        data = load_body(_in)
        db = get_db()
        settings = _settings()
        submitted = create_assessment(
            db=db,
            patient_id=pid,
            actor=current_principal().user,
            data=data,
            rules=settings.rules,
            idempotency_key=key,
        )
        # The one commit: the assessment and its alerts are stored together or not at all.
        db.commit()
        assessment = submitted.assessment
        # A replay carries the crisis block too: the phone may never have seen the first answer.
        crisis = crisis_block(settings) if assessment.safety_item_positive else None
        return created_response(
            _out.dump(Read(assessment, {"crisis": crisis})),
            record_id=assessment.id,
            etag=assessment.etag,
            created=submitted.created,
        )

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="listAssessments",
        tag="assessments",
        replies=[
            Reply(200, "One page of assessments.", schema=AssessmentListOut),
        ],
        problems=(401, 403, 404, 422, 503, 500),
        parameters=("ListAssessmentsInstrument", "Limit", "Cursor"),
    )
    def get(self, patient_id: str) -> Response:
        """A patient's assessments

        The patient or a linked clinician. Live assessments, newest `occurred_at` first,
        paged; `instrument` keeps one catalogue code (an unknown code is 422).
        """
        pid = resolve_patient_id(patient_id)
        stmt = select(Assessment).where(
            Assessment.patient_id == pid, Assessment.deleted_at.is_(None)
        )
        code = request.args.get("instrument")
        if code is not None:
            if code not in CATALOGUE:
                raise validation_error({"instrument": ["Not an instrument of the catalogue."]})
            stmt = stmt.where(Assessment.instrument == code)
        stmt = stmt.order_by(Assessment.occurred_at.desc(), Assessment.id.desc())
        rows, next_cursor = keyset_page(
            get_db(),
            stmt,
            keys=(Assessment.occurred_at, Assessment.id),
            key_of=lambda row: (row[0].occurred_at, row[0].id),
        )
        items = [row[0] for row in rows]
        return json_response(_list_out.dump({"items": items, "next_cursor": next_cursor}))


@ns.route("/<patient_id>/assessments/<assessment_id>")
class AssessmentItem(Resource):
    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="getAssessment",
        tag="assessments",
        replies=[
            Reply(
                200,
                "The assessment.",
                schema=AssessmentOut,
                headers=("ETag", "X-Request-ID", "Cache-Control"),
            ),
        ],
        problems=(401, 403, 404, 503, 500),
    )
    def get(self, patient_id: str, assessment_id: str) -> Response:
        """One assessment

        The patient or a linked clinician. `crisis` is null on reads.
        """
        pid = resolve_patient_id(patient_id)
        assessment = get_assessment(
            db=get_db(), patient_id=pid, assessment_id=path_id(assessment_id)
        )
        return json_response(_out.dump(assessment), etag=assessment.etag)

    @require_auth(Role.patient, Role.clinician)
    @operation(
        operation_id="deleteAssessment",
        tag="assessments",
        replies=[
            Reply(204, "Deleted."),
        ],
        problems=(401, 403, 404, 412, 428, 429, 500),
        parameters=("IfMatch",),
    )
    def delete(self, patient_id: str, assessment_id: str) -> Response:
        """Delete an assessment

        Whoever may submit the instrument (the patient for self-report, a linked clinician
        for clinician-rated; others who can see the patient get 403). A soft delete that keeps
        the prior version; alerts it raised stay.
        """
        pid = resolve_patient_id(patient_id)
        db = get_db()
        assessment = get_assessment(db=db, patient_id=pid, assessment_id=path_id(assessment_id))
        require_if_match(assessment.etag)
        delete_assessment(
            db=db,
            assessment=assessment,
            actor=current_principal().user,
            rules=_settings().rules,
        )
        db.commit()
        return empty_response()
