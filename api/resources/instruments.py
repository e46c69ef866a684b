"""The questionnaire catalogue (reference data; any signed-in user may read it)."""

from __future__ import annotations

from flask import Response
from flask_restx import Namespace, Resource

from api.auth import require_auth
from api.contract import Reply, operation
from api.db import settings
from api.http import json_response
from models.instruments import CATALOGUE, get_instrument
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
        return json_response(_list_out.dump({"items": list(CATALOGUE.values())}))


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
        return json_response(_out.dump(get_instrument(code)))
