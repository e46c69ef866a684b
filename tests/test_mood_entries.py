"""Mood entries: validation, idempotent creates, batch, sync, history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from models import MoodEntry, MoodEntryVersion
from tests.conftest import auth, link, make_staff, register_patient


@pytest.fixture
def patient(client):
    patient = register_patient(client)
    patient["headers"] = auth(client, patient["email"])
    patient["url"] = "/api/v1/patients/me/mood-entries"
    return patient


def _at(hours_ago: float = 1, offset: str = "-08:00") -> str:
    tz = datetime.strptime(offset, "%z").tzinfo
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).astimezone(tz).isoformat()


def _body(**overrides):
    body = {"occurred_at": _at(), "mood": 6}
    body.update(overrides)
    return body


def _count(db, patient_id):
    return db.scalar(
        select(func.count())
        .select_from(MoodEntry)
        .where(MoodEntry.patient_id == uuid.UUID(patient_id))
    )


def test_create_and_read_back_with_offset_and_local_date(client, patient):
    occurred = "2026-11-26T23:30:00-08:00"  # 07:30 UTC the next day
    note = "Felt 🙂 better — ça va. \u200b spaces  kept "
    response = client.post(
        patient["url"],
        json=_body(occurred_at=occurred, anxiety=3, energy=4, sleep_hours=7.5, note=note),
        headers=patient["headers"],
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["occurred_at"] == "2026-11-27T07:30:00+00:00"
    assert body["utc_offset"] == "-08:00"
    assert body["local_date"] == "2026-11-26"
    assert body["note"] == note
    assert body["sleep_hours"] == 7.5
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"].endswith(body["id"])
    again = client.get(f"{patient['url']}/{body['id']}", headers=patient["headers"])
    assert again.get_json() == body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mood", 5.5),
        ("mood", "5"),
        ("mood", True),
        ("mood", 11),
        ("mood", -1),
        ("mood", None),
        ("anxiety", 10.0),
        ("energy", "high"),
        ("sleep_hours", 24.5),
        ("sleep_hours", "7"),
        ("sleep_hours", False),
        ("note", "x" * 2001),
        ("note", "nul\x00byte"),
        ("occurred_at", "2026-11-26T23:30:00"),  # naive
        ("occurred_at", "yesterday"),
        ("id", "not-a-uuid"),
        ("surprise", 1),
    ],
)
def test_invalid_fields_are_422_and_store_nothing(client, db, patient, field, value):
    response = client.post(patient["url"], json=_body(**{field: value}), headers=patient["headers"])
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert _count(db, patient["id"]) == 0


def test_note_limit_counts_characters_not_bytes(client, patient):
    response = client.post(patient["url"], json=_body(note="é" * 2000), headers=patient["headers"])
    assert response.status_code == 201


def test_occurred_at_window(client, patient):
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    nearly = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    ancient = (datetime.now(UTC) - timedelta(days=367)).isoformat()
    for value, status in ((future, 422), (ancient, 422), (nearly, 201)):
        response = client.post(
            patient["url"], json=_body(occurred_at=value), headers=patient["headers"]
        )
        assert response.status_code == status, value


def test_errors_never_echo_the_submitted_values(client, patient):
    marker = "PRIVATE-NOTE-91c2"
    response = client.post(
        patient["url"], json=_body(mood=marker, note=marker * 300), headers=patient["headers"]
    )
    assert response.status_code == 422
    assert marker not in response.get_data(as_text=True)


def test_replay_by_id_and_clash(client, db, patient):
    body = _body(id=str(uuid.uuid4()))
    first = client.post(patient["url"], json=body, headers=patient["headers"])
    replay = client.post(patient["url"], json=body, headers=patient["headers"])
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.get_json() == first.get_json()
    clash = client.post(patient["url"], json={**body, "mood": 2}, headers=patient["headers"])
    assert clash.status_code == 409
    assert _count(db, patient["id"]) == 1


def test_a_replay_takes_no_change_number(client, patient):
    url, headers = patient["url"], patient["headers"]
    body = _body(id=str(uuid.uuid4()))
    assert client.post(url, json=body, headers=headers).status_code == 201
    assert client.post(url, json=body, headers=headers).status_code == 200
    assert client.post(url, json={**body, "mood": 1}, headers=headers).status_code == 409
    assert client.post(url, json=_body(), headers=headers).status_code == 201
    feed = client.get(f"{url}/changes?since=0", headers=headers).get_json()
    assert feed["next_cursor"] == "2"  # the replay and the clash left no gap


def _statements_of(app, send) -> list[str]:
    seen: list[str] = []
    engine = app.extensions["moodtrack"].engine

    def capture(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(statement.split()).lower())

    event.listen(engine, "before_cursor_execute", capture)
    try:
        send()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_a_new_entry_costs_four_statements_on_postgresql_and_five_on_sqlite(app, client, patient):
    """Principal, the row with its change number (one statement on PostgreSQL, where the
    counter's increment is a CTE of the INSERT; two on SQLite), the post-session check and
    the audit row; the commit is not a statement. Throughput rests on this count."""
    url, headers = patient["url"], patient["headers"]
    assert client.post(url, json=_body(), headers=headers).status_code == 201  # pseudonyms read

    def send() -> None:
        assert client.post(url, json=_body(), headers=headers).status_code == 201

    seen = _statements_of(app, send)
    # The test's own transaction wraps the request's in one savepoint, released on commit.
    ours = [s for s in seen if not s.startswith(("savepoint", "release savepoint"))]
    assert "from users" in ours[0]
    if app.extensions["moodtrack"].engine.dialect.name == "postgresql":
        assert [s.split(" ")[0] for s in ours] == ["select", "with", "select", "insert"]
        row = ours[1]
        assert row.index("into sync_counters") < row.index("into mood_entries")
    else:
        assert [s.split(" ")[0] for s in ours] == ["select", "insert", "insert", "select", "insert"]
        assert "into sync_counters" in ours[1]
        row = ours[2]
    assert "into mood_entries" in row and "on conflict do nothing" in row
    assert "from treatment_sessions" in ours[-2]
    assert "into audit_events" in ours[-1]
    assert len(seen) - len(ours) == 2


def test_replay_by_idempotency_key(client, db, patient):
    headers = {**patient["headers"], "Idempotency-Key": "phone-42-entry-7"}
    body = _body()
    first = client.post(patient["url"], json=body, headers=headers)
    replay = client.post(patient["url"], json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.get_json()["id"] == first.get_json()["id"]
    assert client.post(patient["url"], json=_body(mood=1), headers=headers).status_code == 409
    bad_key = {**patient["headers"], "Idempotency-Key": "has space"}
    assert client.post(patient["url"], json=body, headers=bad_key).status_code == 422
    assert _count(db, patient["id"]) == 1


def test_another_patients_id_is_a_clash_not_a_leak(client, patient):
    body = _body(id=str(uuid.uuid4()))
    assert client.post(patient["url"], json=body, headers=patient["headers"]).status_code == 201
    other = register_patient(client)
    response = client.post(
        "/api/v1/patients/me/mood-entries", json=body, headers=auth(client, other["email"])
    )
    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert patient["id"] not in text and '"mood"' not in text and "occurred_at" not in text


def test_clinician_reads_but_cannot_write(app, client, patient):
    clinician = auth(client, make_staff(app)["email"])
    url = f"/api/v1/patients/{patient['id']}/mood-entries"
    assert client.get(url, headers=clinician).status_code == 404
    link(client, clinician, patient["headers"])
    client.post(patient["url"], json=_body(), headers=patient["headers"])
    listed = client.get(url, headers=clinician)
    assert listed.status_code == 200 and len(listed.get_json()["items"]) == 1
    assert client.post(url, json=_body(), headers=clinician).status_code == 403
    other = register_patient(client)
    assert client.get(url, headers=auth(client, other["email"])).status_code == 404
    assert client.get(url).status_code == 401


def test_patch_and_delete_need_if_match_and_keep_history(client, db, patient):
    created = client.post(patient["url"], json=_body(note="first"), headers=patient["headers"])
    url = f"{patient['url']}/{created.get_json()['id']}"
    assert client.patch(url, json={"mood": 2}, headers=patient["headers"]).status_code == 428
    stale = {**patient["headers"], "If-Match": '"7"'}
    assert client.patch(url, json={"mood": 2}, headers=stale).status_code == 412
    fresh = {**patient["headers"], "If-Match": created.headers["ETag"]}
    patched = client.patch(url, json={"mood": 2, "note": None}, headers=fresh)
    assert patched.status_code == 200
    assert patched.get_json()["mood"] == 2 and patched.get_json()["note"] is None
    assert patched.headers["ETag"] == '"2"'
    invalid = client.patch(
        url, json={"mood": 12}, headers={**patient["headers"], "If-Match": '"2"'}
    )
    assert invalid.status_code == 422
    assert client.delete(url, headers=patient["headers"]).status_code == 428
    assert client.delete(url, headers=fresh).status_code == 412
    deleted = client.delete(url, headers={**patient["headers"], "If-Match": '"2"'})
    assert deleted.status_code == 204
    assert client.get(url, headers=patient["headers"]).status_code == 404
    history = db.scalars(select(MoodEntryVersion).order_by(MoodEntryVersion.version)).all()
    history = [h for h in history if str(h.entry_id) == created.get_json()["id"]]
    assert [(h.version, h.change) for h in history] == [(1, "update"), (2, "delete")]
    assert history[0].snapshot["note"] == "first" and history[0].snapshot["mood"] == 6
    assert str(history[1].changed_by_id) == patient["id"]


def test_list_pages_newest_first(client, patient):
    for hours in range(5):
        client.post(
            patient["url"],
            json=_body(occurred_at=_at(hours_ago=hours + 1), mood=hours),
            headers=patient["headers"],
        )
    first = client.get(f"{patient['url']}?limit=3", headers=patient["headers"]).get_json()
    assert [i["mood"] for i in first["items"]] == [0, 1, 2]
    second = client.get(
        f"{patient['url']}?limit=3&cursor={first['next_cursor']}", headers=patient["headers"]
    ).get_json()
    assert [i["mood"] for i in second["items"]] == [3, 4] and second["next_cursor"] is None


def test_sync_reports_changes_and_tombstones_in_order(client, patient):
    url, headers = patient["url"], patient["headers"]
    initial = client.get(f"{url}/changes?since=0", headers=headers).get_json()
    assert initial == {"items": [], "next_cursor": "0", "has_more": False}
    ids = [
        client.post(url, json=_body(mood=m), headers=headers).get_json()["id"] for m in (1, 2, 3)
    ]
    feed = client.get(f"{url}/changes?since=0", headers=headers).get_json()
    assert [i["id"] for i in feed["items"]] == ids and not feed["has_more"]
    cursor = feed["next_cursor"]
    client.patch(f"{url}/{ids[0]}", json={"mood": 9}, headers={**headers, "If-Match": '"1"'})
    client.delete(f"{url}/{ids[1]}", headers={**headers, "If-Match": '"1"'})
    changes = client.get(f"{url}/changes?since={cursor}", headers=headers).get_json()
    assert [(i["id"], i["deleted"]) for i in changes["items"]] == [(ids[0], False), (ids[1], True)]
    assert changes["items"][0]["entry"]["mood"] == 9 and changes["items"][1]["entry"] is None
    done = client.get(f"{url}/changes?since={changes['next_cursor']}", headers=headers).get_json()
    assert done["items"] == [] and done["next_cursor"] == changes["next_cursor"]


def test_sync_pages_stay_correct_while_writes_arrive(client, patient):
    url, headers = patient["url"], patient["headers"]
    for m in range(5):
        client.post(url, json=_body(mood=m), headers=headers)
    seen, cursor = [], "0"
    page = client.get(f"{url}/changes?since={cursor}&limit=2", headers=headers).get_json()
    seen += page["items"]
    cursor = page["next_cursor"]
    # Writes land between pages: a new entry and an edit of one already synced.
    late = client.post(url, json=_body(mood=10), headers=headers).get_json()["id"]
    client.patch(f"{url}/{seen[0]['id']}", json={"mood": 7}, headers={**headers, "If-Match": '"1"'})
    while True:
        page = client.get(f"{url}/changes?since={cursor}&limit=2", headers=headers).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    final = {}
    for change in seen:
        final[change["id"]] = change
    assert len(final) == 6 and late in final
    assert final[seen[0]["id"]]["entry"]["mood"] == 7


@pytest.mark.parametrize("cursor", ["-1", "abc", "1.5", str(2**70)])
def test_bad_sync_cursor_is_422(client, patient, cursor):
    response = client.get(f"{patient['url']}/changes?since={cursor}", headers=patient["headers"])
    assert response.status_code == 422


def test_batch_one_bad_item_fails_alone(client, db, patient):
    known = _body(id=str(uuid.uuid4()), mood=4)
    client.post(patient["url"], json=known, headers=patient["headers"])
    repeated = _body(id=str(uuid.uuid4()), mood=3)
    entries = [
        _body(mood=1),
        _body(mood=11),  # invalid
        known,  # replay of a stored entry
        {**known, "mood": 5},  # clash with the stored entry
        repeated,
        repeated,  # replay within the batch
        {**repeated, "mood": 2},  # clash within the batch
        {"mood": 5},  # missing occurred_at
    ]
    response = client.post(
        f"{patient['url']}/batch", json={"entries": entries}, headers=patient["headers"]
    )
    assert response.status_code == 200
    body = response.get_json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [201, 422, 200, 409, 201, 200, 409, 422]
    assert [r["index"] for r in body["results"]] == list(range(8))
    assert "mood" in body["results"][1]["problem"]["errors"]
    assert "occurred_at" in body["results"][7]["problem"]["errors"]
    assert body["results"][2]["entry"]["id"] == known["id"]
    assert body["results"][5]["entry"]["id"] == repeated["id"]
    assert (body["created"], body["duplicates"], body["failed"]) == (2, 2, 4)
    assert _count(db, patient["id"]) == 3


def test_batch_replay_of_the_whole_batch_stores_nothing_new(client, db, patient):
    entries = [
        _body(id=str(uuid.uuid4()), mood=m % 11, occurred_at=_at(hours_ago=m + 1))
        for m in range(500)
    ]
    first = client.post(
        f"{patient['url']}/batch", json={"entries": entries}, headers=patient["headers"]
    ).get_json()
    assert first["created"] == 500 and first["failed"] == 0
    again = client.post(
        f"{patient['url']}/batch", json={"entries": entries}, headers=patient["headers"]
    ).get_json()
    assert again["created"] == 0 and again["duplicates"] == 500
    assert _count(db, patient["id"]) == 500
    feed = client.get(
        f"{patient['url']}/changes?since=0&limit=500", headers=patient["headers"]
    ).get_json()
    assert len(feed["items"]) == 500 and not feed["has_more"]


def test_batch_over_500_is_refused_whole(client, db, patient):
    entries = [_body() for _ in range(501)]
    response = client.post(
        f"{patient['url']}/batch", json={"entries": entries}, headers=patient["headers"]
    )
    assert response.status_code == 422 and "entries" in response.get_json()["errors"]
    assert _count(db, patient["id"]) == 0
    assert (
        client.post(
            f"{patient['url']}/batch", json={"entries": []}, headers=patient["headers"]
        ).status_code
        == 422
    )


def test_a_clash_caught_by_the_caller_gives_its_change_number_back(db):
    """The batch's race fallback catches an item's 409 and commits the rest: the number the
    clashing item took must not stay taken (no gap in the patient's change numbers)."""
    from models.errors import Conflict
    from models.mood_writes import create_entry
    from models.outcomes import RuleSet
    from models.sync import SyncCounter
    from tests import factories as f

    p = f.patient(db)
    data = {"id": uuid.uuid4(), "occurred_at": datetime.now(UTC), "mood": 4}
    create_entry(db=db, patient_id=p.id, actor_id=p.id, data=data, rules=RuleSet())
    with pytest.raises(Conflict):
        create_entry(
            db=db, patient_id=p.id, actor_id=p.id, data={**data, "mood": 5}, rules=RuleSet()
        )
    db.commit()
    assert db.get(SyncCounter, p.id).last_seq == 1


def test_the_older_sync_form_still_answers_the_feed(app, patient):
    """Phones that sync with ``?updated_since=`` keep working: the same feed, undeclared
    (the contract names the feed syncMoodEntries), so a client that does not check it."""
    from flask.testing import FlaskClient

    plain = FlaskClient(app, app.response_class)
    url, headers = patient["url"], patient["headers"]
    plain.post(url, json=_body(mood=4), headers=headers)
    old = plain.get(f"{url}?updated_since=0", headers=headers)
    new = plain.get(f"{url}/changes?since=0", headers=headers)
    assert old.status_code == new.status_code == 200
    assert old.get_json() == new.get_json() and old.get_json()["items"][0]["entry"]["mood"] == 4
    bad = plain.get(f"{url}?updated_since=abc", headers=headers)
    assert bad.status_code == 422 and list(bad.get_json()["errors"]) == ["updated_since"]
