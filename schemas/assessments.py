"""Questionnaire responses on the wire."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from models.instruments import CATALOGUE, answer_errors
from schemas.common import RecordOut, StrictInteger, Text, UtcOffset, occurred_at_field

# Far more than any form has; bounds the work of validating a hostile list.
MAX_ANSWERS = 64


class AssessmentIn(Schema):
    """A completed questionnaire; the server checks every answer and computes the total."""

    id = fields.UUID(
        metadata={
            "description": "Client-chosen id; a repeat with the same body returns the stored one."
        }
    )
    instrument = Text(
        required=True,
        validate=validate.OneOf(sorted(CATALOGUE)),
        metadata={"description": "Catalogue code (GET /api/v1/instruments)."},
    )
    answers = fields.List(
        StrictInteger(),
        required=True,
        validate=validate.Length(max=MAX_ANSWERS),
        metadata={
            "description": "One integer per item, in item order (index 0 is item 1); every "
            "item must be answered, within its range. Errors name `answers.<index>`."
        },
    )
    occurred_at = occurred_at_field(required=True)
    difficulty = StrictInteger(
        allow_none=True,
        metadata={"description": "PHQ-9 only: difficulty, 0 to 3; never added to the total."},
    )

    session_id = fields.UUID(
        allow_none=True,
        metadata={"description": "A session of this patient the form belongs to (else 422)."},
    )
    phase = Text(
        allow_none=True,
        validate=validate.OneOf(["pre", "post"]),
        metadata={"description": "Before or after that session; needs `session_id`."},
    )

    @validates_schema
    def _check_form(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("phase") is not None and data.get("session_id") is None:
            raise ValidationError({"phase": ["Give session_id with phase."]})
        errors = answer_errors(
            CATALOGUE[data["instrument"]], data["answers"], data.get("difficulty")
        )
        if errors:
            raise ValidationError(errors)  # type: ignore[arg-type]


class CrisisResourceOut(Schema):
    """Somewhere to turn now."""

    name = fields.String(required=True)
    contact = fields.String(required=True)


class CrisisOut(Schema):
    """Crisis information, sent at once when a self-harm item is answered above 0."""

    message = fields.String(required=True)
    resources = fields.List(fields.Nested(CrisisResourceOut), required=True)
    monitored_in_real_time = fields.Boolean(
        required=True, metadata={"description": "Always false: nobody watches entries live."}
    )


class AssessmentOut(RecordOut):
    """A stored questionnaire response with its server-computed score.

    Dumps an Assessment; a create dumps a `Read` of it that adds the `crisis` block."""

    id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    instrument = fields.String(required=True)
    answers = fields.List(fields.Integer(), required=True)
    difficulty = fields.Integer(required=True, allow_none=True)
    session_id = fields.UUID(required=True, allow_none=True)
    phase = fields.String(required=True, allow_none=True)
    occurred_at = fields.AwareDateTime(required=True, metadata={"description": "UTC instant."})
    utc_offset = UtcOffset(
        required=True,
        attribute="utc_offset_minutes",
        metadata={"description": "The offset the client sent, e.g. -08:00."},
    )
    local_date = fields.Date(required=True, metadata={"description": "The patient's local date."})
    total = fields.Integer(required=True)
    band = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Severity band code from the catalogue; null without bands."},
    )
    flags = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "`self_harm_item_positive` when the safety item is >= 1."},
    )
    instrument_version = fields.String(required=True)
    scoring_version = fields.String(required=True)
    ruleset_version = fields.String(required=True)
    rated_by_id = fields.UUID(
        required=True,
        allow_none=True,
        metadata={"description": "The rating clinician; null for self-report."},
    )
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    version = fields.Integer(required=True)
    crisis = fields.Nested(
        CrisisOut,
        required=True,
        allow_none=True,
        dump_default=None,
        metadata={
            "description": "On a create (and its replay) whose safety item is positive; "
            "else null. A null block says nothing about risk."
        },
    )


class AssessmentListOut(Schema):
    """One page of assessments, newest first."""

    items = fields.List(fields.Nested(AssessmentOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
