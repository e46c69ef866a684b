"""The clinician's alerts inbox: who sees which alerts, order, paging, acknowledging once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from models import Alert, Role
from tests.conftest import auth, link, make_staff, register_patient

INBOX = "/api/v1/alerts"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _alert(db, patient_id: str, priority: str, minutes: int, rule: str = "self_harm") -> str:
    """An alert row written directly, so created_at (and so the order) is chosen."""
    alert = Alert(
        patient_id=uuid.UUID(patient_id),
        rule=rule,
        priority=priority,
        source_type="assessment",
        source_id=uuid.uuid4(),
        created_at=T0 + timedelta(minutes=minutes),
        ruleset_version="test",
        details={"instrument": "phq9", "item": 9, "value": 1, "total": 12},
    )
    db.add(alert)
    db.commit()
    return str(alert.id)


@pytest.fixture
def team(app, client):
    clinician = make_staff(app)
    ch = auth(client, clinician["email"])
    patients = []
    for _ in range(2):
        patient = register_patient(client)
        ph = auth(client, patient["email"])
        link_id = link(client, ch, ph)
        patients.append({**patient, "headers": ph, "link_id": link_id})
    return {"clinician": clinician, "headers": ch, "patients": patients}


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_inbox_lists_open_alerts_of_linked_patients_most_urgent_then_newest(app, client, db, team):
    a, b = (p["id"] for p in team["patients"])
    outsider = register_patient(client)
    old_high = _alert(db, a, "high", 1)
    new_medium = _alert(db, b, "medium", 30, rule="worsening")
    new_high = _alert(db, b, "high", 20)
    old_medium = _alert(db, a, "medium", 2, rule="post_session_drop")
    _alert(db, outsider["id"], "high", 40)  # not linked: never shown
    response = client.get(INBOX, headers=team["headers"])
    assert _ids(response) == [new_high, old_high, new_medium, old_medium]
    first = response.get_json()["items"][0]
    assert first["patient_id"] == b and first["patient_display_name"] == "Pat"
    assert first["rule"] == "self_harm" and first["priority"] == "high"
    assert first["source_type"] == "assessment" and first["details"]["item"] == 9
    assert first["acknowledged_at"] is None and first["acknowledgement_note"] is None
    assert response.headers["Cache-Control"] == "no-store"
    # Another clinician, linked to no one here, sees an empty inbox.
    other = auth(client, make_staff(app)["email"])
    assert _ids(client.get(INBOX, headers=other)) == []


def test_inbox_pages_keep_the_order_across_priorities(client, db, team):
    a, b = (p["id"] for p in team["patients"])
    made = [_alert(db, (a, b)[i % 2], ("high", "medium")[i % 3 == 0], i) for i in range(7)]
    everything = _ids(client.get(f"{INBOX}?limit=500", headers=team["headers"]))
    assert sorted(everything) == sorted(made)
    seen, cursor = [], None
    while True:
        url = f"{INBOX}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=team["headers"]).get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    bad = client.get(f"{INBOX}?cursor=nonsense", headers=team["headers"])
    assert bad.status_code == 422 and "cursor" in bad.get_json()["errors"]


def test_status_filter(client, db, team):
    a = team["patients"][0]["id"]
    open_one = _alert(db, a, "high", 1)
    done = _alert(db, a, "medium", 2)
    response = client.post(f"{INBOX}/{done}/acknowledge", json={}, headers=team["headers"])
    assert response.status_code == 200
    assert _ids(client.get(INBOX, headers=team["headers"])) == [open_one]
    assert _ids(client.get(f"{INBOX}?status=open", headers=team["headers"])) == [open_one]
    assert _ids(client.get(f"{INBOX}?status=acknowledged", headers=team["headers"])) == [done]
    assert _ids(client.get(f"{INBOX}?status=all", headers=team["headers"])) == [open_one, done]
    bad = client.get(f"{INBOX}?status=closed", headers=team["headers"])
    assert bad.status_code == 422 and "status" in bad.get_json()["errors"]


def test_one_patients_alerts_for_linked_clinicians_only(app, client, db, team):
    patient, other = team["patients"]
    mine = _alert(db, patient["id"], "high", 1)
    _alert(db, other["id"], "high", 2)
    url = f"/api/v1/patients/{patient['id']}/alerts"
    assert _ids(client.get(url, headers=team["headers"])) == [mine]
    # Patients get 403, their own alerts included; unlinked clinicians 404; no token 401.
    assert client.get(url, headers=patient["headers"]).status_code == 403
    me = "/api/v1/patients/me/alerts"
    assert client.get(me, headers=patient["headers"]).status_code == 403
    assert client.get(me, headers=team["headers"]).status_code == 404
    stranger = auth(client, make_staff(app)["email"])
    assert client.get(url, headers=stranger).status_code == 404
    assert (
        client.get(f"/api/v1/patients/{uuid.uuid4()}/alerts", headers=stranger).status_code == 404
    )
    assert client.get(url).status_code == 401
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    assert client.get(INBOX, headers=admin).status_code == 403
    assert client.get(INBOX, headers=patient["headers"]).status_code == 403


def test_ending_the_link_hides_the_patients_alerts(client, db, team):
    patient = team["patients"][0]
    alert_id = _alert(db, patient["id"], "high", 1)
    response = client.delete(f"/api/v1/care-links/{patient['link_id']}", headers=team["headers"])
    assert response.status_code == 204
    assert alert_id not in _ids(client.get(INBOX, headers=team["headers"]))
    url = f"/api/v1/patients/{patient['id']}/alerts"
    assert client.get(url, headers=team["headers"]).status_code == 404
    ack = client.post(f"{INBOX}/{alert_id}/acknowledge", json={}, headers=team["headers"])
    assert ack.status_code == 404


def test_a_self_harm_answer_reaches_the_inbox_and_is_acknowledged_once(app, client, team):
    patient = team["patients"][0]
    answers = [1, 1, 1, 1, 0, 0, 0, 0, 2]
    occurred = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    submitted = client.post(
        "/api/v1/patients/me/assessments",
        json={"instrument": "phq9", "answers": answers, "occurred_at": occurred},
        headers=patient["headers"],
    )
    assert submitted.status_code == 201
    [item] = client.get(INBOX, headers=team["headers"]).get_json()["items"]
    assert item["rule"] == "self_harm" and item["priority"] == "high"
    assert item["source_id"] == submitted.get_json()["id"]
    url = f"{INBOX}/{item['id']}/acknowledge"

    # Only a linked clinician: the patient 403, an unlinked clinician 404 as if absent.
    assert client.post(url, json={}, headers=patient["headers"]).status_code == 403
    stranger = auth(client, make_staff(app)["email"])
    assert client.post(url, json={}, headers=stranger).status_code == 404
    too_long = client.post(url, json={"note": "x" * 2001}, headers=team["headers"])
    assert too_long.status_code == 422 and "note" in too_long.get_json()["errors"]
    unknown = client.post(url, json={"seen": True}, headers=team["headers"])
    assert unknown.status_code == 422

    note = "Called the patient; safety plan reviewed. Ünïcode kept."
    done = client.post(url, json={"note": note}, headers=team["headers"])
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["acknowledgement_note"] == note
    assert body["acknowledged_by_id"] == team["clinician"]["id"]
    assert datetime.fromisoformat(body["acknowledged_at"]) <= datetime.now(UTC)
    again = client.post(url, json={}, headers=team["headers"])
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    # Another linked clinician cannot acknowledge it a second time either.
    colleague = auth(client, make_staff(app)["email"])
    link(client, colleague, patient["headers"])
    assert client.post(url, headers=colleague).status_code == 409
    listed = client.get(f"{INBOX}?status=acknowledged", headers=team["headers"]).get_json()
    assert listed["items"][0]["acknowledgement_note"] == note


def test_acknowledge_without_a_body_and_with_a_null_note(client, db, team):
    a = team["patients"][0]["id"]
    first, second = _alert(db, a, "high", 1), _alert(db, a, "high", 2)
    bare = client.post(f"{INBOX}/{first}/acknowledge", headers=team["headers"])
    assert bare.status_code == 200 and bare.get_json()["acknowledgement_note"] is None
    null = client.post(
        f"{INBOX}/{second}/acknowledge", json={"note": None}, headers=team["headers"]
    )
    assert null.status_code == 200
    for bad_id in ("not-a-uuid", str(uuid.uuid4())):
        response = client.post(f"{INBOX}/{bad_id}/acknowledge", headers=team["headers"])
        assert response.status_code == 404
    malformed = client.post(
        f"{INBOX}/{first}/acknowledge",
        data="{",
        content_type="application/json",
        headers=team["headers"],
    )
    assert malformed.status_code == 400


def _statements(app, client, url, headers) -> list[str]:
    seen: list[str] = []
    engine = app.extensions["moodtrack"].engine

    def count(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url, headers=headers).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def test_a_page_costs_the_same_queries_however_many_patients(app, client, db, team):
    for p in team["patients"]:
        _alert(db, p["id"], "high", 1)
    few = _statements(app, client, INBOX, team["headers"])
    for _ in range(4):
        patient = register_patient(client)
        link(client, team["headers"], auth(client, patient["email"]))
        for minutes in range(3):
            _alert(db, patient["id"], "medium", minutes)
    many = _statements(app, client, INBOX, team["headers"])
    assert len(many) == len(few)
    # One query reads the alerts and the patients' names together.
    assert sum("alerts" in s and "users" in s for s in many) == 1
