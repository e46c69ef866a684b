"""The active outcome definitions (clinical.md §3) on the wire: read-only."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ResponseRuleOut(Schema):
    """Response: current at most this fraction of baseline, on the same instrument."""

    current_at_most_fraction_of_baseline = fields.Float(required=True)


class RemissionRuleOut(Schema):
    """Remission: the current value `operator` `cutoff`."""

    # A pattern, not an enum: generators cannot name members "<" and "<=" (VALUE_0, VALUE_1).
    operator = fields.String(
        required=True, metadata={"pattern": "^<=?$", "description": "`<` or `<=`."}
    )
    cutoff = fields.Float(required=True)


class DropRuleOut(Schema):
    """Reliable improvement: a drop of at least this many points from baseline."""

    drop_at_least = fields.Integer(required=True)


class ImprovementRuleOut(Schema):
    """Minimal important change: an improvement of at least this many points."""

    improvement_at_least = fields.Integer(required=True)


class RelapseRuleOut(Schema):
    """Relapse (STAR*D): a total at least this after the first total in remission."""

    at_least = fields.Integer(required=True)
    after = fields.String(required=True, validate=validate.OneOf(["remission"]))


class AlertRulesOut(Schema):
    """The alert thresholds (analytics.md "Alerts")."""

    worsening_points = fields.Integer(required=True)
    post_session_drop_points = fields.Integer(required=True)
    post_session_window_hours = fields.Integer(required=True)
    self_harm_high_from = fields.Integer(
        required=True, metadata={"description": "Safety item value from which priority is high."}
    )


class OutcomeDefinitionsOut(Schema):
    """The definitions this deployment applies; `version` is stored with every label and
    alert they produce. Per-instrument rules are keyed by instrument code."""

    version = fields.String(required=True)
    response = fields.Nested(ResponseRuleOut, required=True)
    remission = fields.Dict(
        keys=fields.String(), values=fields.Nested(RemissionRuleOut), required=True
    )
    reliable_improvement = fields.Dict(
        keys=fields.String(), values=fields.Nested(DropRuleOut), required=True
    )
    minimal_important_change = fields.Dict(
        keys=fields.String(), values=fields.Nested(ImprovementRuleOut), required=True
    )
    relapse = fields.Dict(keys=fields.String(), values=fields.Nested(RelapseRuleOut), required=True)
    alerts = fields.Nested(AlertRulesOut, required=True)
