"""The questionnaire catalogue on the wire."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_dump, validate

from models.instruments import Instrument


class BandOut(Schema):
    """A severity band; `min` and `max` are inclusive totals."""

    code = fields.String(required=True)
    label = fields.String(required=True)
    min = fields.Integer(required=True, attribute="low")
    max = fields.Integer(required=True, attribute="high")


class AnswerOptionOut(Schema):
    """One labelled answer value."""

    value = fields.Integer(required=True)
    label = fields.String(required=True)
    loinc_code = fields.String(
        required=True, allow_none=True, metadata={"description": "LOINC answer code, if verified."}
    )


class ItemOut(Schema):
    """One scored item, numbered from 1; answers go in `answers` at index number - 1."""

    number = fields.Integer(required=True)
    min = fields.Integer(required=True, attribute="low")
    max = fields.Integer(required=True, attribute="high")
    text = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Item wording, only where the licence allows it."},
    )
    domain = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The scoring domain (QIDS-SR16), else null."},
    )
    loinc_code = fields.String(required=True, allow_none=True)
    # An item does not know it is the safety item: InstrumentOut marks it.
    safety_item = fields.Boolean(
        required=True,
        dump_default=False,
        metadata={"description": "A positive answer (>= 1) returns crisis information."},
    )


class DifficultyItemOut(Schema):
    """PHQ-9's difficulty item: send it as `difficulty`; stored, never added to the total."""

    number = fields.Integer(required=True)
    text = fields.String(required=True)
    loinc_code = fields.String(required=True, allow_none=True)
    answer_options = fields.List(fields.Nested(AnswerOptionOut), required=True, attribute="options")


class InstrumentOut(Schema):
    """A questionnaire: items, ranges, scoring, bands, direction, respondent, codes, licence.

    Dumps a models.instruments.Instrument."""

    code = fields.String(required=True)
    name = fields.String(required=True)
    respondent = fields.String(
        required=True,
        validate=validate.OneOf(["patient", "clinician"]),
        metadata={"description": "`patient`: self-report; `clinician`: a linked clinician rates."},
    )
    instrument_version = fields.String(required=True)
    scoring_version = fields.String(required=True)
    item_count = fields.Integer(required=True)
    total_min = fields.Integer(required=True)
    total_max = fields.Integer(required=True)
    scoring = fields.String(required=True, metadata={"description": "How the total is computed."})
    direction = fields.String(
        required=True,
        validate=validate.OneOf(["up", "down"]),
        metadata={"description": "`down`: a higher total is worse."},
    )
    recall_period = fields.String(required=True, allow_none=True)
    instructions = fields.String(required=True, allow_none=True)
    items = fields.List(fields.Nested(ItemOut), required=True)
    answer_options = fields.List(
        fields.Nested(AnswerOptionOut),
        required=True,
        metadata={"description": "Labels shared by every item; empty where none are published."},
    )
    difficulty_item = fields.Nested(DifficultyItemOut, required=True, allow_none=True)
    bands = fields.List(
        fields.Nested(BandOut), required=True, metadata={"description": "Empty: no bands."}
    )
    loinc_panel = fields.String(required=True, allow_none=True)
    loinc_total = fields.String(required=True, allow_none=True)
    licence = fields.String(required=True)
    copyright = fields.String(required=True, allow_none=True)

    @post_dump(pass_original=True)
    def _mark_safety_item(
        self, data: dict[str, Any], instrument: Instrument, **_kwargs: Any
    ) -> dict[str, Any]:
        for item in data["items"]:
            item["safety_item"] = item["number"] == instrument.safety_item
        return data


class InstrumentListOut(Schema):
    """The whole catalogue (it is small, so it is not paged)."""

    items = fields.List(fields.Nested(InstrumentOut), required=True)
