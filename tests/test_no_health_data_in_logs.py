"""No health data in logs: a marker pushed through every write path (and through failures,
query strings and an unexpected exception) appears in no log line, whatever handler or
stream it would go to."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import api.resources.mood
from api.logs import JsonFormatter
from models import Role
from tests.conftest import PASSWORD, auth, make_staff
from tests.privacy_data import new_marker, populate

REPO = Path(__file__).resolve().parent.parent


class _Capture(logging.Handler):
    """Keeps every record, formatted the way the app formats its own lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self._json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self._json.format(record))
        self.lines.append(repr(record.__dict__))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    root, ours = logging.getLogger(), logging.getLogger("moodtrack")
    previous = root.level
    # Stricter than production (root at WARNING): library INFO lines are searched too.
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    ours.addHandler(handler)  # "moodtrack" does not propagate to the root logger
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        ours.removeHandler(handler)
        root.setLevel(previous)


def test_a_marker_through_every_write_path_reaches_no_log_line(
    app, client, captured, caplog, capfd, monkeypatch
):
    caplog.set_level(logging.DEBUG, logger="moodtrack")
    marker = new_marker()
    # Every write path, every free-text field (tests/privacy_data.py).
    patient = populate(app, client, marker)
    ph, ch = patient["headers"], patient["clinician_headers"]
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    created = client.post(
        "/api/v1/users",
        json={
            "email": f"staff-{marker.lower()}@example.org",
            "password": f"{PASSWORD} {marker[:12]}",
            "role": "clinician",
            "display_name": marker,
            "timezone": "UTC",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()

    # Refusals and validation failures must not log what was sent either.
    me = "/api/v1/patients/me"
    refusals = [
        client.post("/api/v1/auth/login", json={"email": marker, "password": marker}),
        client.post("/api/v1/auth/login", json={"email": patient["email"], "password": marker}),
        client.post("/api/v1/care-links", json={"code": marker}, headers=ph),
        client.post(
            f"{me}/mood-entries",
            json={"occurred_at": "2026-11-26T10:00:00+00:00", "mood": 5, "note": marker * 60},
            headers=ph,
        ),
        client.post(f"{me}/mood-entries", json={marker: marker}, headers=ph),
        client.post(
            f"{me}/assessments",
            json={"instrument": "phq9", "answers": [marker], "occurred_at": marker},
            headers=ph,
        ),
        client.post(f"{me}/mood-entries", data=f'{{"note": "{marker}"', headers=ph),
        client.get(f"{me}/assessments?instrument={marker}", headers=ph),
        client.get(f"/api/v1/alerts?status={marker}&cursor={marker}", headers=ch),
        client.delete("/api/v1/me", json={"password": marker}, headers=ph),
    ]
    assert all(400 <= r.status_code < 500 for r in refusals), [r.status_code for r in refusals]

    # An unexpected exception whose message quotes stored data: logged by type and place only.
    def explode(**_kwargs):
        raise ValueError(f"could not store note {marker}")

    monkeypatch.setattr(api.resources.mood, "create_entry", explode)
    crashed = client.post(
        f"{me}/mood-entries",
        json={"occurred_at": "2026-11-26T10:00:00+00:00", "mood": 5, "note": marker},
        headers=ph,
    )
    assert crashed.status_code == 500
    assert marker not in crashed.get_data(as_text=True)

    # Finally the erasure itself.
    assert client.delete("/api/v1/me", json={"password": PASSWORD}, headers=ph).status_code == 204

    out, err = capfd.readouterr()
    streams = {
        "handler": "\n".join(captured.lines),
        "caplog": caplog.text,
        "stdout": out,
        "stderr": err,
    }
    # The capture works: the request lines and the unexpected exception were seen.
    assert '"route":"/api/v1/patients/<patient_id>/mood-entries"' in streams["handler"]
    assert "unhandled exception" in streams["handler"]
    hits = {name: text.count(marker) for name, text in streams.items()}
    assert hits == dict.fromkeys(streams, 0)
    lowered = marker.lower()
    assert all(lowered not in text.lower() for text in streams.values())


def test_no_server_writes_an_access_log_with_query_strings():
    # gunicorn logs no access lines unless told to; neither the image nor `moodtrack serve`
    # tells it (the app's own request line has the route template, never the query).
    dockerfile = (REPO / "Dockerfile").read_text("utf-8")
    cli = (REPO / "api" / "cli.py").read_text("utf-8")
    for text in (dockerfile, cli):
        assert not re.search(r"access[-_]?log", text), text
