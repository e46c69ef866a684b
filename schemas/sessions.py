"""Treatment sessions and their observations on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marshmallow import Schema, fields, validate

from models.sessions import (
    Drug,
    Observation,
    Route,
    SessionStatus,
    Setting,
    TreatmentSession,
    dose_flags,
    monitoring_checklist,
)
from schemas.common import (
    Instant,
    Read,
    RecordOut,
    StrictInteger,
    StrictNumber,
    Text,
    UtcOffset,
    note_field,
)

_LIST_ITEM = Text(validate=validate.Length(min=1, max=200))


def _instant(**kwargs: object) -> Instant:
    return Instant(**kwargs)  # type: ignore[arg-type]


class SessionIn(Schema):
    """A session to record: scheduled ahead, or completed after the fact."""

    id = fields.UUID()
    status = fields.Enum(SessionStatus, by_value=True, required=True)
    started_at = _instant(required=True, metadata={"description": "Scheduled or actual start."})
    ended_at = _instant(allow_none=True)
    discharged_at = _instant(allow_none=True)
    drug = fields.Enum(Drug, by_value=True, required=True)
    route = fields.Enum(Route, by_value=True, required=True)
    dose_mg = StrictNumber(
        allow_none=True,
        validate=validate.Range(min=0, min_inclusive=False, max=5000),
        metadata={
            "description": "Required once completed; esketamine 28, 56 or 84.",
            "exclusiveMinimum": True,
        },
    )
    weight_kg = StrictNumber(allow_none=True, validate=validate.Range(min=20, max=350))
    setting = fields.Enum(Setting, by_value=True, required=True)
    concomitant_medications = fields.List(_LIST_ITEM, validate=validate.Length(max=50))
    adverse_events = fields.List(_LIST_ITEM, validate=validate.Length(max=50))
    notes = note_field(allow_none=True)


class SessionUpdate(SessionIn):
    """A partial change to a session; status moves only from scheduled.

    The create schema with partial=True: every rule of a field holds on PATCH, and the rules
    across fields apply to the merged result (models.session_writes). `id` is excluded: a
    session's id never changes.
    """

    class Meta:
        exclude = ("id",)

    def __init__(self, **kwargs: Any) -> None:
        # By default, so that the contract (built from the class) lists nothing as required.
        kwargs.setdefault("partial", True)
        super().__init__(**kwargs)


class ChecklistItemOut(Schema):
    """One monitoring duty: bp_before_dosing, bp_at_40_minutes, bp_before_discharge,
    observation_2_hours (required for esketamine)."""

    item = fields.String(required=True)
    required = fields.Boolean(required=True)
    present = fields.Boolean(required=True)


class SessionOut(RecordOut):
    """A session as stored, with its number in the course and its monitoring checklist.

    Dumps a `session_read` of a TreatmentSession."""

    id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    number = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "1 = first completed session; null unless completed."},
    )
    status = fields.String(required=True)
    started_at = fields.AwareDateTime(required=True)
    utc_offset = UtcOffset(required=True, attribute="utc_offset_minutes")
    ended_at = fields.AwareDateTime(required=True, allow_none=True)
    discharged_at = fields.AwareDateTime(required=True, allow_none=True)
    drug = fields.String(required=True)
    route = fields.String(required=True)
    dose_mg = fields.Float(required=True, allow_none=True)
    weight_kg = fields.Float(required=True, allow_none=True)
    dose_mg_per_kg = fields.Float(required=True, allow_none=True)
    dose_flags = fields.List(
        fields.String(),
        required=True,
        metadata={
            "description": "dose_below_usual_range, dose_above_usual_range, "
            "weight_missing: warnings, not refusals."
        },
    )
    setting = fields.String(required=True)
    concomitant_medications = fields.List(fields.String(), required=True)
    adverse_events = fields.List(fields.String(), required=True)
    notes = fields.String(required=True, allow_none=True)
    monitoring = fields.List(fields.Nested(ChecklistItemOut), required=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    version = fields.Integer(required=True)


def session_read(
    session: TreatmentSession, number: int | None, observations: Sequence[Observation]
) -> Read:
    """What SessionOut shows of a session beyond its row: its number in the course (from
    models.sessions.session_numbers), its dose flags, and the monitoring checklist that its
    observations (oldest first) give."""
    return Read(
        session,
        {
            "number": number,
            "dose_flags": dose_flags(session),
            "monitoring": monitoring_checklist(session, list(observations)),
        },
    )


class SessionListOut(Schema):
    """One page of sessions, latest start first."""

    items = fields.List(fields.Nested(SessionOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


def _reading(low: int, high: int, description: str) -> StrictInteger:
    return StrictInteger(
        allow_none=True,
        validate=validate.Range(min=low, max=high),
        metadata={"description": description},
    )


class ObservationIn(Schema):
    """One set of readings during a session; at least one reading. Supply `id` (a UUID)
    so a retry cannot store it twice."""

    id = fields.UUID(
        metadata={
            "description": "Client-chosen id; a repeat with the same body returns the stored "
            "observation."
        }
    )
    observed_at = Instant(required=True)
    systolic = _reading(50, 300, "mmHg")
    diastolic = _reading(20, 200, "mmHg")
    heart_rate = _reading(20, 250, "beats per minute")
    spo2 = _reading(50, 100, "%")
    sedation_moaas = _reading(0, 5, "MOAA/S, 5 = responds readily to name")
    cadss_total = _reading(0, 92, "CADSS total")
    note = note_field(allow_none=True)


class ObservationOut(Schema):
    """Readings as stored (dumps an Observation)."""

    id = fields.UUID(required=True)
    session_id = fields.UUID(required=True)
    observed_at = fields.AwareDateTime(required=True)
    utc_offset = UtcOffset(required=True, attribute="utc_offset_minutes")
    systolic = fields.Integer(required=True, allow_none=True)
    diastolic = fields.Integer(required=True, allow_none=True)
    heart_rate = fields.Integer(required=True, allow_none=True)
    spo2 = fields.Integer(required=True, allow_none=True)
    sedation_moaas = fields.Integer(required=True, allow_none=True)
    cadss_total = fields.Integer(required=True, allow_none=True)
    note = fields.String(required=True, allow_none=True)
    created_at = fields.AwareDateTime(required=True)


class ObservationListOut(Schema):
    """A session's observations, oldest first."""

    items = fields.List(fields.Nested(ObservationOut), required=True)
