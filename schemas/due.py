"""The phone's due list on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields


class DueItemOut(Schema):
    """One thing to ask the patient for, with the window in which it counts."""

    kind = fields.String(
        required=True,
        metadata={
            "description": "daily_mood, questionnaire, pre_session, post_session_4h, "
            "post_session_24h or post_session_7d"
        },
    )
    instrument = fields.String(required=True, metadata={"description": "mood or phq9"})
    window_start = fields.AwareDateTime(required=True)
    window_end = fields.AwareDateTime(required=True, metadata={"description": "Exclusive."})
    session_id = fields.UUID(required=True, allow_none=True)
    done = fields.Boolean(required=True)


class DueListOut(Schema):
    """Current and upcoming check-ins (next 7 days), earliest window first."""

    timezone = fields.String(required=True)
    generated_at = fields.AwareDateTime(required=True)
    items = fields.List(fields.Nested(DueItemOut), required=True)
