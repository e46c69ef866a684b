"""Trend, effect and course reports on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.common import UtcOffset


class BucketOut(Schema):
    """One bucket of a series.

    The trends view sends models.analytics.Bucket as orjson writes it, for speed: its fields
    must stay these, in this order (tests/test_analytics.py compares the two texts)."""

    start = fields.Date(
        required=True, metadata={"description": "The local date, ISO week's Monday or month's 1st."}
    )
    mean = fields.Float(required=True)
    n = fields.Integer(required=True)
    min = fields.Float(required=True)
    max = fields.Float(required=True)


class RollingOut(Schema):
    """The 7-day rolling mean at one day (sent as models.analytics.RollingPoint; as above)."""

    date = fields.Date(required=True)
    mean = fields.Float(required=True)


class SummaryOut(Schema):
    """Baseline, current and the outcome labels; a label is null where inputs are missing."""

    metric = fields.String(required=True)
    direction = fields.String(
        required=True, metadata={"description": "up: higher is better; down: lower is better"}
    )
    baseline = fields.Float(required=True, allow_none=True)
    current = fields.Float(required=True, allow_none=True)
    change = fields.Float(required=True, allow_none=True)
    percent_change = fields.Float(required=True, allow_none=True)
    improvement = fields.Float(required=True, allow_none=True)
    response = fields.Boolean(required=True, allow_none=True)
    remission = fields.Boolean(required=True, allow_none=True)
    reliable_improvement = fields.Boolean(required=True, allow_none=True)
    minimal_important_change = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "Improvement of at least the instrument's minimal important "
            "change (PHQ-9: 5 points by default); null without a rule."
        },
    )
    relapse = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "STAR*D relapse: a total at or above the relapse level (QIDS-SR16 "
            ">= 11 by default) after the first total in remission; null without a relapse "
            "rule or before any remission."
        },
    )
    band = fields.String(required=True, allow_none=True)
    latest_value = fields.Float(required=True, allow_none=True)
    latest_at = fields.AwareDateTime(required=True, allow_none=True)
    ruleset_version = fields.String(
        required=True, metadata={"description": "Of the definitions that gave the labels."}
    )


class TrendOut(Schema):
    """A metric over time for one patient."""

    metric = fields.String(required=True)
    direction = fields.String(required=True)
    bucket = fields.String(required=True)
    date_from = fields.Date(required=True, allow_none=True, data_key="from")
    date_to = fields.Date(required=True, allow_none=True, data_key="to")
    series = fields.List(fields.Nested(BucketOut), required=True)
    rolling7 = fields.List(
        fields.Nested(RollingOut),
        required=True,
        allow_none=True,
        metadata={"description": "Day buckets only; null for week and month."},
    )
    slope_per_week = fields.Float(required=True, allow_none=True)
    summary = fields.Nested(SummaryOut, required=True)


class WindowOut(Schema):
    """One window after the session's start."""

    name = fields.String(required=True, metadata={"description": "acute, day1, day3 or day7"})
    start = fields.AwareDateTime(required=True, metadata={"description": "Exclusive."})
    end = fields.AwareDateTime(required=True, metadata={"description": "Inclusive."})
    value = fields.Float(required=True, allow_none=True)
    n = fields.Integer(required=True)
    delta = fields.Float(required=True, allow_none=True)
    improvement = fields.Float(required=True, allow_none=True)


class EffectOut(Schema):
    """How much one completed session helped on one metric, and for how long."""

    session_id = fields.UUID(required=True)
    number = fields.Integer(required=True)
    metric = fields.String(required=True)
    direction = fields.String(required=True)
    started_at = fields.AwareDateTime(required=True)
    span_end = fields.AwareDateTime(
        required=True, allow_none=True, metadata={"description": "Next completed session."}
    )
    pre = fields.Float(required=True, allow_none=True)
    pre_source = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "linked (pre check-ins) or last_24h (last before the start)"},
    )
    windows = fields.List(fields.Nested(WindowOut), required=True)
    durability_days = fields.Integer(required=True, allow_none=True)
    effect_ended = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "true: a later day was no better than pre, which ended the effect "
            "after durability_days; false: still holding when the data ends. Not a relapse in "
            "the clinical (STAR*D) sense: see the summary's `relapse`."
        },
    )


def _window_change(name: str) -> fields.Float:
    return fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": f"{name} minus pre (the mood change; null if either is)."},
    )


class CourseSessionOut(Schema):
    """One completed session in the course, with its mood effect."""

    number = fields.Integer(required=True)
    session_id = fields.UUID(required=True)
    started_at = fields.AwareDateTime(required=True)
    utc_offset = UtcOffset(
        required=True,
        attribute="utc_offset_minutes",
        metadata={"description": "The offset the session was recorded with, e.g. -08:00."},
    )
    local_date = fields.Date(required=True, metadata={"description": "The local start date."})
    drug = fields.String(required=True)
    route = fields.String(required=True)
    dose_mg = fields.Float(required=True, allow_none=True)
    dose_mg_per_kg = fields.Float(required=True, allow_none=True)
    pre = fields.Float(required=True, allow_none=True)
    acute = fields.Float(required=True, allow_none=True)
    day1 = fields.Float(required=True, allow_none=True)
    day3 = fields.Float(required=True, allow_none=True)
    day7 = fields.Float(required=True, allow_none=True)
    acute_change = _window_change("acute")
    day1_change = _window_change("day1")
    day3_change = _window_change("day3")
    day7_change = _window_change("day7")
    durability_days = fields.Integer(required=True, allow_none=True)
    effect_ended = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "true: a later day was no better than pre, which ended the effect "
            "after durability_days; false: still holding when the data ends. Not a relapse in "
            "the clinical (STAR*D) sense: see the summary's `relapse`."
        },
    )
    adverse_events = fields.List(fields.String(), required=True)


class CourseOut(Schema):
    """The treatment course at a glance."""

    sessions_completed = fields.Integer(required=True)
    phq9 = fields.Nested(SummaryOut, required=True)
    mood = fields.Nested(SummaryOut, required=True)
    sessions = fields.List(fields.Nested(CourseSessionOut), required=True)
