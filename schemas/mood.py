"""Mood entries on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import (
    StrictInteger,
    StrictNumber,
    Text,
    UtcOffset,
    note_field,
    occurred_at_field,
)

MAX_BATCH = 500


def _scale(**kwargs: object) -> StrictInteger:
    return StrictInteger(validate=validate.Range(min=0, max=10), **kwargs)  # type: ignore[arg-type]


class MoodEntryIn(Schema):
    """A new mood entry. Supply `id` (a UUID) so a retry cannot store it twice."""

    id = fields.UUID(
        metadata={
            "description": "Client-chosen id; a repeat with the same body returns the stored entry."
        }
    )
    occurred_at = occurred_at_field(required=True)
    mood = _scale(required=True, metadata={"description": "0 worst to 10 best (higher is better)"})
    anxiety = _scale(allow_none=True, metadata={"description": "0 none to 10 worst"})
    energy = _scale(allow_none=True, metadata={"description": "0 none to 10 most"})
    sleep_hours = StrictNumber(allow_none=True, validate=validate.Range(min=0, max=24))
    note = note_field(allow_none=True)
    session_id = fields.UUID(
        allow_none=True, metadata={"description": "A session of this patient; needs phase."}
    )
    phase = Text(
        allow_none=True,
        validate=validate.OneOf(["pre", "post"]),
        metadata={"description": "pre: before the session starts; post: after."},
    )


class MoodEntryUpdate(Schema):
    """A partial change to a mood entry (send only what changes)."""

    occurred_at = occurred_at_field()
    mood = _scale()
    anxiety = _scale(allow_none=True)
    energy = _scale(allow_none=True)
    sleep_hours = StrictNumber(allow_none=True, validate=validate.Range(min=0, max=24))
    note = note_field(allow_none=True)
    session_id = fields.UUID(
        allow_none=True, metadata={"description": "A session of this patient; needs phase."}
    )
    phase = Text(
        allow_none=True,
        validate=validate.OneOf(["pre", "post"]),
        metadata={"description": "pre: before the session starts; post: after."},
    )


class MoodEntryOut(Schema):
    """A stored mood entry."""

    id = fields.UUID(required=True)
    patient_id = fields.UUID(required=True)
    occurred_at = fields.AwareDateTime(required=True, metadata={"description": "UTC instant."})
    utc_offset = UtcOffset(
        attribute="utc_offset_minutes",
        required=True,
        metadata={"description": "The offset the phone sent, e.g. -08:00."},
    )
    local_date = fields.Date(required=True, metadata={"description": "The patient's local date."})
    mood = fields.Integer(required=True)
    anxiety = fields.Integer(required=True, allow_none=True)
    energy = fields.Integer(required=True, allow_none=True)
    sleep_hours = fields.Float(required=True, allow_none=True)
    note = fields.String(required=True, allow_none=True)
    session_id = fields.UUID(required=True, allow_none=True)
    phase = fields.String(required=True, allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    version = fields.Integer(required=True)


class MoodEntryListOut(Schema):
    """One page of mood entries, newest first."""

    items = fields.List(fields.Nested(MoodEntryOut), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class MoodEntryChangeOut(Schema):
    """One change in the sync feed: the entry as it is now, or a tombstone."""

    id = fields.UUID(required=True)
    deleted = fields.Boolean(required=True)
    updated_at = fields.AwareDateTime(required=True)
    entry = fields.Nested(
        MoodEntryOut, required=True, allow_none=True, metadata={"description": "Null when deleted."}
    )


class MoodEntrySyncOut(Schema):
    """Changes since the cursor, oldest first; store `next_cursor` for the next sync."""

    items = fields.List(fields.Nested(MoodEntryChangeOut), required=True)
    next_cursor = fields.String(required=True)
    has_more = fields.Boolean(required=True)


class MoodEntryBatchIn(Schema):
    """Up to 500 entries saved offline; each is validated on its own."""

    entries = fields.List(
        fields.Nested(MoodEntryIn),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
        metadata={"description": "An item that is not a valid MoodEntryIn fails alone (422)."},
    )


class MoodEntryBatchItemsIn(Schema):
    """The batch as the server reads it: objects, each then loaded as a MoodEntryIn on its
    own so that a bad item fails alone (MoodEntryBatchIn is what clients are told to send)."""

    entries = fields.List(
        fields.Dict(), required=True, validate=validate.Length(min=1, max=MAX_BATCH)
    )


class BatchProblemOut(Schema):
    """Why one batch item was not stored."""

    status = fields.Integer(required=True)
    title = fields.String(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), metadata={"nullable": False}
    )


class BatchItemOut(Schema):
    """The outcome of one batch item, in request order."""

    index = fields.Integer(required=True)
    status = fields.Integer(
        required=True,
        metadata={
            "description": "201 stored, 200 already stored (replay), 409 id clash, 422 invalid"
        },
    )
    entry = fields.Nested(MoodEntryOut, required=True, allow_none=True)
    problem = fields.Nested(BatchProblemOut, required=True, allow_none=True)


class MoodEntryBatchOut(Schema):
    """One result per submitted item."""

    results = fields.List(fields.Nested(BatchItemOut), required=True)
    created = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    failed = fields.Integer(required=True)
