"""The clinician report and the patient's export on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.accounts import UserOut
from schemas.alerts import AlertOut
from schemas.analytics import CourseOut, SummaryOut
from schemas.assessments import AssessmentOut
from schemas.care import CareLinkOut
from schemas.common import UtcOffset
from schemas.mood import MoodEntryOut
from schemas.sessions import ObservationOut, SessionOut


class ReportPatientOut(Schema):
    """Who the report is about."""

    id = fields.UUID(required=True)
    display_name = fields.String(required=True)
    timezone = fields.String(required=True)


class ReportTrendOut(Schema):
    """One metric over the report's range."""

    metric = fields.String(required=True)
    direction = fields.String(
        required=True, metadata={"description": "up: higher is better; down: lower is better"}
    )
    days_with_data = fields.Integer(required=True)
    measurements = fields.Integer(required=True)
    first_date = fields.Date(required=True, allow_none=True)
    last_date = fields.Date(required=True, allow_none=True)
    mean = fields.Float(
        required=True, allow_none=True, metadata={"description": "Mean of all measurements."}
    )
    slope_per_week = fields.Float(required=True, allow_none=True)
    summary = fields.Nested(SummaryOut, required=True)


class ReportCountsOut(Schema):
    """How many records the report's range holds."""

    mood_entries = fields.Integer(required=True)
    assessments = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Live assessments by instrument code."},
    )
    sessions_completed = fields.Integer(
        required=True, metadata={"description": "Completed sessions whose local start is in range."}
    )
    measurements = fields.Integer(
        required=True, metadata={"description": "Rows of the CSV for the same range."}
    )


class ReportPeriodOut(Schema):
    """The local dates the report covers."""

    date_from = fields.Date(required=True, data_key="from")
    date_to = fields.Date(required=True, data_key="to")


class ReportQuestionnaireOut(Schema):
    """One completed questionnaire in the report's range."""

    id = fields.UUID(required=True)
    instrument = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    utc_offset = UtcOffset(required=True, attribute="utc_offset_minutes")
    local_date = fields.Date(required=True)
    total = fields.Integer(required=True)
    band = fields.String(required=True, allow_none=True)
    self_harm_item_positive = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "The safety item (PHQ-9 item 9, QIDS-SR16 item 12) answered 1 or "
            "more; null for instruments without one. false means not positive, never safe."
        },
    )
    session_number = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The completed session whose span holds it; null before S1."},
    )
    phase = fields.String(required=True, allow_none=True)


class ReportAdherenceOut(Schema):
    """Days with a mood entry among the last `days` local dates, ending today."""

    days = fields.Integer(required=True)
    days_with_entries = fields.Integer(required=True)
    fraction = fields.Float(required=True)
    date_from = fields.Date(required=True, data_key="from")
    date_to = fields.Date(required=True, data_key="to")


class ChartPointOut(Schema):
    """One mark of a chart."""

    date = fields.Date(required=True, attribute="day", metadata={"description": "Local date."})
    value = fields.Float(required=True)
    n = fields.Integer(required=True, metadata={"description": "Measurements it stands for."})
    side = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "On a completed session's local date: before (measurements before "
            "its start) or after (from its start on); else null.",
            "enum": ["before", "after", None],
        },
    )
    session_number = fields.Integer(required=True, allow_none=True)


class ChartGapOut(Schema):
    """Consecutive points further apart than the join limit: no line joins them."""

    after = fields.Date(required=True)
    before = fields.Date(required=True)
    days = fields.Integer(required=True)


class ChartSessionOut(Schema):
    """A completed session marked on a chart."""

    number = fields.Integer(required=True)
    date = fields.Date(required=True, attribute="day")


class ChartOut(Schema):
    """What one chart of the report draws (the HTML page's charts are drawn from this)."""

    metric = fields.String(required=True)
    direction = fields.String(required=True)
    points_are = fields.String(
        required=True,
        metadata={
            "description": "daily_mean: a local day's mean (split before/after on a session "
            "day); total: one questionnaire's total.",
            "enum": ["daily_mean", "total"],
        },
    )
    low = fields.Float(required=True)
    high = fields.Float(required=True)
    date_from = fields.Date(required=True, allow_none=True, data_key="from")
    date_to = fields.Date(required=True, allow_none=True, data_key="to")
    join_days = fields.Integer(
        required=True,
        metadata={"description": "A line joins consecutive points at most this many days apart."},
    )
    baseline = fields.Float(required=True, allow_none=True)
    latest = fields.Nested(ChartPointOut, required=True, allow_none=True)
    points = fields.List(fields.Nested(ChartPointOut), required=True)
    gaps = fields.List(fields.Nested(ChartGapOut), required=True)
    sessions = fields.List(fields.Nested(ChartSessionOut), required=True)


class EffectWindowRuleOut(Schema):
    """An effect window after a session's start s: (s + after_hours, s + until_hours]."""

    name = fields.String(required=True)
    after_hours = fields.Float(required=True)
    until_hours = fields.Float(required=True)


class ReportRemissionOut(Schema):
    """Remission on one instrument: current `operator` `cutoff`."""

    instrument = fields.String(required=True)
    operator = fields.String(required=True)
    cutoff = fields.Float(required=True)


class ReportReliableImprovementOut(Schema):
    """Reliable improvement on one instrument: a drop of at least `drop` points."""

    instrument = fields.String(required=True)
    drop = fields.Integer(required=True)


class ChartIntervalOut(Schema):
    """How often a charted metric is usually measured, and the longest stretch a line joins."""

    metric = fields.String(required=True)
    usual_interval_days = fields.Integer(required=True)
    join_days = fields.Integer(required=True)


class ReportDefinitionsOut(Schema):
    """The rules and windows the report's figures were computed with."""

    ruleset_version = fields.String(required=True)
    baseline_days = fields.Integer(required=True)
    current_days = fields.Integer(required=True)
    pre_fallback_hours = fields.Integer(required=True)
    effect_windows = fields.List(fields.Nested(EffectWindowRuleOut), required=True)
    response_fraction = fields.Float(required=True)
    remission = fields.List(fields.Nested(ReportRemissionOut), required=True)
    reliable_improvement = fields.List(fields.Nested(ReportReliableImprovementOut), required=True)
    adherence_days = fields.Integer(required=True)
    mood_chart_days = fields.Integer(required=True)
    chart_intervals = fields.List(fields.Nested(ChartIntervalOut), required=True)


class ReportOut(Schema):
    """The clinician report: course, trends and counts for one patient."""

    patient = fields.Nested(ReportPatientOut, required=True)
    generated_at = fields.AwareDateTime(required=True)
    date_from = fields.Date(required=True, allow_none=True, data_key="from")
    date_to = fields.Date(required=True, allow_none=True, data_key="to")
    course = fields.Nested(
        CourseOut,
        required=True,
        metadata={"description": "As GET .../course; not limited by from/to."},
    )
    trends = fields.List(fields.Nested(ReportTrendOut), required=True)
    counts = fields.Nested(ReportCountsOut, required=True)
    period = fields.Nested(
        ReportPeriodOut,
        required=True,
        metadata={
            "description": "from/to when given; else from the first record to the patient's "
            "local today."
        },
    )
    questionnaires = fields.List(fields.Nested(ReportQuestionnaireOut), required=True)
    adherence = fields.Nested(ReportAdherenceOut, required=True)
    open_alerts = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Unacknowledged alerts; null when the patient asks."},
    )
    charts = fields.List(
        fields.Nested(ChartOut),
        required=True,
        metadata={"description": "phq9 over the period, then mood over its last weeks."},
    )
    definitions = fields.Nested(ReportDefinitionsOut, required=True)


class MoodEntryVersionOut(Schema):
    """A mood entry as it was before a change."""

    entry_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    snapshot = fields.Dict(keys=fields.String(), required=True)
    changed_at = fields.AwareDateTime(required=True)
    changed_by_id = fields.UUID(required=True, allow_none=True)
    change = fields.String(required=True)


class ExportCareLinkOut(CareLinkOut):
    """A care link, live or ended."""

    ended_at = fields.AwareDateTime(required=True, allow_none=True)


class ExportCountsOut(Schema):
    """How many records of each kind the export holds."""

    mood_entries = fields.Integer(required=True)
    mood_entry_versions = fields.Integer(required=True)
    assessments = fields.Integer(required=True)
    sessions = fields.Integer(required=True)
    observations = fields.Integer(required=True)
    alerts = fields.Integer(required=True)
    care_links = fields.Integer(required=True)


class ExportOut(Schema):
    """Every live record of the calling patient."""

    generated_at = fields.AwareDateTime(required=True)
    profile = fields.Nested(UserOut, required=True)
    mood_entries = fields.List(fields.Nested(MoodEntryOut), required=True)
    mood_entry_versions = fields.List(
        fields.Nested(MoodEntryVersionOut),
        required=True,
        metadata={"description": "Earlier versions of the live entries."},
    )
    assessments = fields.List(fields.Nested(AssessmentOut), required=True)
    sessions = fields.List(fields.Nested(SessionOut), required=True)
    observations = fields.List(fields.Nested(ObservationOut), required=True)
    alerts = fields.List(fields.Nested(AlertOut), required=True)
    care_links = fields.List(fields.Nested(ExportCareLinkOut), required=True)
    counts = fields.Nested(ExportCountsOut, required=True)
