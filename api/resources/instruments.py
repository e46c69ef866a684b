"""The questionnaire catalogue (reference data; any signed-in user may read it)."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_restx import Namespace, Resource

from api.auth import require_auth
from api.contract import Reply, operation
from api.db import settings
from api.http import json_response
from models.instruments import CATALOGUE, AnswerOption, Instrument, get_instrument
from schemas.instruments import InstrumentListOut, InstrumentOut
from schemas.outcomes import OutcomeDefinitionsOut

ns = Namespace("instruments", path="/instruments", description="Questionnaire catalogue")
_out, _list_out = InstrumentOut(), InstrumentListOut()
_definitions_out = OutcomeDefinitionsOut()
# The outcome definitions sit beside the catalogue they apply to.
definitions_ns = Namespace(
    "outcome-definitions", path="/outcome-definitions", description="Outcome definitions"
)


@definitions_ns.route("")
class OutcomeDefinitions(Resource):
    @require_auth()
    @operation(
        operation_id="getOutcomeDefinitions",
        tag="instruments",
        replies=[
            Reply(200, "The definitions.", schema=OutcomeDefinitionsOut),
        ],
        problems=(401, 500),
    )
    def get(self) -> Response:
        """The outcome definitions in force

        Any signed-in user. Response, remission, reliable improvement, minimal important
        change and relapse (STAR*D) thresholds, and the alert thresholds, as this deployment
        applies them; set at start with `MOODTRACK_RULES` (a JSON object or `@file.json`,
        e.g. `{"remission": {"madrs": ["<=", 12]}}` for the esketamine programme). `version`
        is stored with every label (`ruleset_version` of summaries, courses, the cohort) and
        every alert; a deployment that changes a default gets the default version plus a
        digest of its values unless it names its own.
        """
        return json_response(_definitions_out.dump(settings().rules.describe()))


def _option(option: AnswerOption) -> dict[str, Any]:
    return {"value": option.value, "label": option.label, "loinc_code": option.loinc_code}


def instrument_data(instrument: Instrument) -> dict[str, Any]:
    """A catalogue entry as InstrumentOut expects it."""
    difficulty = instrument.difficulty_item
    return {
        "code": instrument.code,
        "name": instrument.name,
        "respondent": instrument.respondent,
        "instrument_version": instrument.instrument_version,
        "scoring_version": instrument.scoring_version,
        "item_count": instrument.item_count,
        "total_min": instrument.total_min,
        "total_max": instrument.total_max,
        "scoring": instrument.scoring,
        "direction": instrument.direction,
        "recall_period": instrument.recall_period,
        "instructions": instrument.instructions,
        "items": [
            {
                "number": item.number,
                "min": item.low,
                "max": item.high,
                "text": item.text,
                "domain": item.domain,
                "loinc_code": item.loinc_code,
                "safety_item": item.number == instrument.safety_item,
            }
            for item in instrument.items
        ],
        "answer_options": [_option(o) for o in instrument.answer_options],
        "difficulty_item": None
        if difficulty is None
        else {
            "number": difficulty.number,
            "text": difficulty.text,
            "loinc_code": difficulty.loinc_code,
            "answer_options": [_option(o) for o in difficulty.options],
        },
        "bands": [
            {"code": b.code, "label": b.label, "min": b.low, "max": b.high}
            for b in instrument.bands
        ],
        "loinc_panel": instrument.loinc_panel,
        "loinc_total": instrument.loinc_total,
        "licence": instrument.licence,
        "copyright": instrument.copyright,
    }


@ns.route("")
class Instruments(Resource):
    @require_auth()
    @operation(
        operation_id="listInstruments",
        tag="instruments",
        replies=[
            Reply(200, "Every instrument.", schema=InstrumentListOut),
        ],
        problems=(401, 403, 500),
    )
    def get(self) -> Response:
        """The questionnaire catalogue

        Any signed-in user. Items, ranges, bands, direction, respondent, LOINC codes (only
        verified ones; else null), answer labels, and item text only where the licence allows
        (PHQ-9, GAD-7). Not paged: the catalogue is small.
        """
        items = [instrument_data(i) for i in CATALOGUE.values()]
        return json_response(_list_out.dump({"items": items}))


@ns.route("/<code>")
class InstrumentItem(Resource):
    @require_auth()
    @operation(
        operation_id="getInstrument",
        tag="instruments",
        replies=[
            Reply(200, "The instrument.", schema=InstrumentOut),
        ],
        problems=(401, 403, 404, 500),
    )
    def get(self, code: str) -> Response:
        """One instrument"""
        return json_response(_out.dump(instrument_data(get_instrument(code))))
