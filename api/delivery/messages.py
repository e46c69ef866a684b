"""What an event says when it leaves the service: the webhook body and the email text.

The minimum, by rule: ids, codes, priority, times and a link. Never a note, an answer, a
score or a name; whoever follows the link signs in to see more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from models.delivery import Claimed
from models.events import EventType

_SUBJECTS = {
    EventType.alert_raised: "moodtrack: high-priority alert",
    EventType.alert_escalated: "moodtrack: ESCALATION - alert not acknowledged",
    EventType.webhook_disabled: "moodtrack: webhook endpoint disabled",
}
SAFETY_LINE = (
    "This message carries no health data: sign in to moodtrack to see more. "
    "moodtrack entries are not monitored in real time."
)


def link_for(event_type: str, data: dict[str, Any], public_url: str) -> str:
    """Where a reader goes next: the alert, the patient's due list, or the endpoint."""
    api = f"{public_url}/api/v1"
    if "alert_id" in data:
        return f"{api}/alerts/{data['alert_id']}"
    if event_type == EventType.reminder_due:
        return f"{api}/patients/me/due"
    if "webhook_id" in data:
        return f"{api}/webhooks/{data['webhook_id']}"
    return api


def webhook_body(claimed: Claimed, public_url: str) -> bytes:
    """The JSON body of a webhook request (Standard Webhooks shape: type, timestamp, data)."""
    data = {**claimed.payload, "link": link_for(claimed.event_type, claimed.payload, public_url)}
    body = {
        "id": str(claimed.event_id),
        "type": claimed.event_type,
        "timestamp": claimed.event_created_at.isoformat(),
        "data": data,
    }
    return orjson.dumps(body)


def email_text(claimed: Claimed, public_url: str) -> tuple[str, str]:
    """Subject and plain-text body of an email."""
    data = claimed.payload
    kind = EventType(claimed.event_type)
    link = link_for(claimed.event_type, data, public_url)
    if kind == EventType.webhook_disabled:
        lines = [
            "A webhook endpoint was disabled after failing without a success for a day.",
            f"Endpoint id: {data.get('webhook_id')}",
            f"Failing since: {_when(data.get('failing_since'))}",
            f"Disabled at: {_when(data.get('disabled_at'))}",
            f"Review it: {link}",
        ]
    else:
        opening = (
            "A high-priority alert has not been acknowledged in time."
            if kind == EventType.alert_escalated
            else "A high-priority alert was raised for a patient under your care."
        )
        lines = [
            opening,
            f"Rule: {data.get('rule')}",
            f"Priority: {data.get('priority')}",
            f"Raised at: {_when(data.get('raised_at'))}",
            f"Alert id: {data.get('alert_id')}",
            f"Open it: {link}",
        ]
    return _SUBJECTS.get(kind, "moodtrack notification"), "\n".join([*lines, "", SAFETY_LINE])


def _when(value: Any) -> str:
    if not value:
        return "unknown"
    return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
