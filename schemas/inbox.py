"""The clinician's alerts inbox and the acknowledgement of an alert, on the wire."""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas.alerts import AlertOut
from schemas.common import PageOut, note_field


class AlertInboxOut(AlertOut):
    """An alert as the inbox lists it: with the display name of its patient."""

    patient_display_name = fields.String(required=True)


class AlertListOut(PageOut):
    """One page of alerts, highest priority first, then newest."""

    items = fields.List(fields.Nested(AlertInboxOut), required=True)


class AlertAcknowledgeIn(Schema):
    """A clinician acknowledging an alert, optionally with a note."""

    note = note_field(allow_none=True, load_default=None)
