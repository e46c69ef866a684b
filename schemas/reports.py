"""The clinician report and the patient's export on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.accounts import UserOut
from schemas.alerts import AlertOut
from schemas.analytics import CourseOut, SummaryOut
from schemas.assessments import AssessmentOut
from schemas.care import CareLinkOut
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
