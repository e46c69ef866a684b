"""The committing tier: transactions as production runs them, which the rolled-back savepoint
of every other test hides. A read runs each statement in its own transaction (autocommit: no
BEGIN or ROLLBACK); on SQLite a writing request takes the write lock at BEGIN (BEGIN
IMMEDIATE), and so does an audited read's audit row, in a transaction of its own; on
PostgreSQL that row is one INSERT. Each row is really committed, or the read is refused
(503). Runs on SQLite and on TEST_DATABASE_URL alike."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import g, request_finished
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from models import MoodEntry
from models.audit import AuditEvent, AuditSubject
from tests.conftest import auth, register_patient


@contextmanager
def _transcript(app: Any) -> Iterator[list[str]]:
    """Every statement the engine runs, with COMMIT and ROLLBACK, in order (this thread)."""
    engine = app.extensions["moodtrack"].engine
    lines: list[str] = []
    me = threading.get_ident()

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        if threading.get_ident() == me:
            lines.append(" ".join(text.split()).upper())

    def commit(_conn: Any) -> None:
        if threading.get_ident() == me:
            lines.append("COMMIT")

    def rollback(_conn: Any) -> None:
        if threading.get_ident() == me:
            lines.append("ROLLBACK")

    hooks = (("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback))
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield lines
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)


def _dialect(app: Any) -> str:
    return app.extensions["moodtrack"].engine.dialect.name


@pytest.fixture
def patient(app: Any, committing: list[str]) -> dict[str, Any]:
    client = app.test_client()
    patient = register_patient(client)
    committing.append(patient["email"])
    patient["headers"] = auth(client, patient["email"])
    return patient


def _entry(minutes: int = 5) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    return {"occurred_at": at.isoformat(), "mood": 6}


def _audit_rows(app: Any, patient_id: str, action: str) -> int:
    """Committed audit rows about the patient (a new session sees committed rows only)."""
    with app.extensions["moodtrack"].session_factory() as db:
        pseudonym = db.scalar(
            select(AuditSubject.pseudonym).where(AuditSubject.user_id == uuid.UUID(patient_id))
        )
        return db.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.patient == pseudonym, AuditEvent.action == action)
        )


def test_a_write_takes_the_write_lock_at_begin_and_commits_with_its_audit_row(app, patient):
    client = app.test_client()
    with _transcript(app) as lines:
        response = client.post(
            "/api/v1/patients/me/mood-entries", json=_entry(), headers=patient["headers"]
        )
    assert response.status_code == 201
    if _dialect(app) == "sqlite":
        assert lines[0] == "BEGIN IMMEDIATE", lines[:3]
    # On PostgreSQL the entry's INSERT takes its change number in a CTE (WITH ... INSERT).
    inserts = [i for i, line in enumerate(lines) if "INSERT INTO" in line]
    tables = [table for i in inserts for table in re.findall(r"INSERT INTO (\w+)", lines[i])]
    assert "MOOD_ENTRIES" in tables and "AUDIT_EVENTS" in tables
    # One transaction: the entry and its audit row, then the one commit.
    assert lines.count("COMMIT") == 1 and lines.index("COMMIT") > max(inserts)
    assert "ROLLBACK" not in lines[: lines.index("COMMIT")]
    assert _audit_rows(app, patient["id"], "create") == 1


def test_an_audited_read_commits_its_audit_row(app, patient):
    client = app.test_client()
    with _transcript(app) as lines:
        response = client.get("/api/v1/patients/me/mood-entries", headers=patient["headers"])
    assert response.status_code == 200
    audit = next(i for i, line in enumerate(lines) if line.startswith("INSERT INTO AUDIT_EVENTS"))
    assert lines[audit + 1 :] == ["COMMIT"], lines
    reads = [i for i, line in enumerate(lines[:audit]) if line.startswith("SELECT")]
    assert reads, "the read itself ran before its audit row"
    assert not lines[0].startswith("BEGIN"), lines
    if _dialect(app) == "sqlite":
        # The read ran in autocommit; the audit row's own transaction takes the write lock
        # at BEGIN (a deferred one could not upgrade while other readers are busy).
        assert lines[audit - 2 : audit] == ["ROLLBACK", "BEGIN IMMEDIATE"], lines
    else:
        # PostgreSQL: no rollback in between, and no transaction opened at all (below).
        assert "ROLLBACK" not in lines[:audit] and "COMMIT" not in lines[:audit]
    assert _audit_rows(app, patient["id"], "read") == 1


def test_reads_run_without_begin_and_writes_in_one_transaction(app, patient):
    """A safe request's reads each commit on their own (no BEGIN, no ROLLBACK); a write
    keeps its one transaction, audit row included. The read's audit row: one autocommitted
    INSERT on PostgreSQL, a BEGIN IMMEDIATE transaction of its own on SQLite."""
    engine = app.extensions["moodtrack"].engine
    seen: list[tuple[str, bool]] = []  # (first word, inside a transaction?)

    def note(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.split()[0].upper()
        if verb == "BEGIN":
            return
        raw = cursor.connection
        inside = raw.in_transaction if _dialect(app) == "sqlite" else not raw.autocommit
        seen.append((verb, inside))

    client = app.test_client()
    event.listen(engine, "before_cursor_execute", note)
    try:
        read = client.get("/api/v1/patients/me/mood-entries", headers=patient["headers"])
        reads = list(seen)
        seen.clear()
        written = client.post(
            "/api/v1/patients/me/mood-entries", json=_entry(), headers=patient["headers"]
        )
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert read.status_code == 200 and written.status_code == 201
    selects = [inside for verb, inside in reads if verb == "SELECT"]
    assert selects and not any(selects), reads
    assert ("INSERT", _dialect(app) == "sqlite") in reads, reads
    assert ("INSERT", True) in seen and all(inside for _, inside in seen), seen
    assert _audit_rows(app, patient["id"], "read") == 1
    assert _audit_rows(app, patient["id"], "create") == 1


def test_a_read_that_touches_no_health_data_writes_nothing(app, patient):
    client = app.test_client()
    with _transcript(app) as lines:
        assert client.get("/api/v1/me", headers=patient["headers"]).status_code == 200
    assert not any(line.startswith(("INSERT", "UPDATE", "DELETE")) for line in lines)
    # A reader opens no transaction, so it takes no lock of any kind.
    assert not any(line.startswith("BEGIN") for line in lines), lines


def test_a_read_whose_audit_row_cannot_be_committed_is_refused(app, patient):
    client = app.test_client()
    marker = f"note-{uuid.uuid4().hex}"
    created = client.post(
        "/api/v1/patients/me/mood-entries",
        json={**_entry(), "note": marker},
        headers=patient["headers"],
    )
    assert created.status_code == 201
    engine = app.extensions["moodtrack"].engine

    def fail_audit(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS"):
            raise OperationalError(statement, {}, Exception("disk full"))

    event.listen(engine, "before_cursor_execute", fail_audit)
    try:
        refused = client.get("/api/v1/patients/me/mood-entries", headers=patient["headers"])
    finally:
        event.remove(engine, "before_cursor_execute", fail_audit)
    assert refused.status_code == 503 and refused.mimetype == "application/problem+json"
    assert refused.headers["Retry-After"] == "5"
    assert marker not in refused.get_data(as_text=True)
    assert _audit_rows(app, patient["id"], "read") == 0
    # Once the trail can be written again, the read is served and recorded.
    served = client.get("/api/v1/patients/me/mood-entries", headers=patient["headers"])
    assert served.status_code == 200 and marker in served.get_data(as_text=True)
    assert _audit_rows(app, patient["id"], "read") == 1


def test_concurrent_reads_and_writes_all_commit(app, patient):
    """Writers and audited readers of one patient at once: every request is served (no
    SQLITE_BUSY from a read transaction turned writer) and every one is in the trail."""
    headers = patient["headers"]

    def request(i: int) -> int:
        client = app.test_client()
        if i % 2:
            return client.get("/api/v1/patients/me/mood-entries", headers=headers).status_code
        return client.post(
            "/api/v1/patients/me/mood-entries", json=_entry(minutes=10 + i), headers=headers
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(request, range(40)))
    assert statuses.count(201) == 20 and statuses.count(200) == 20, statuses
    with app.extensions["moodtrack"].session_factory() as db:
        stored = db.scalar(
            select(func.count())
            .select_from(MoodEntry)
            .where(MoodEntry.patient_id == uuid.UUID(patient["id"]))
        )
    assert stored == 20
    assert _audit_rows(app, patient["id"], "create") == 20
    assert _audit_rows(app, patient["id"], "read") == 20


def test_a_refused_read_writes_its_audit_row_in_a_transaction_of_its_own(app, patient):
    client = app.test_client()
    someone = f"/api/v1/patients/{uuid.uuid4()}/mood-entries"
    with _transcript(app) as lines:
        assert client.get(someone, headers=patient["headers"]).status_code == 404
    audit = next(i for i, line in enumerate(lines) if line.startswith("INSERT INTO AUDIT_EVENTS"))
    assert lines[audit + 1 :] == ["COMMIT"], lines
    if _dialect(app) == "sqlite":
        # Not in autocommit like the read before it: the write lock is taken at BEGIN.
        assert "BEGIN IMMEDIATE" in lines[:audit], lines


def _outcomes_of_request(app: Any, request_id: str) -> list[tuple[str, str]]:
    with app.extensions["moodtrack"].session_factory() as db:
        rows = db.execute(
            select(AuditEvent.action, AuditEvent.outcome).where(AuditEvent.request_id == request_id)
        )
        return sorted((action, outcome) for action, outcome in rows)


def test_a_refused_write_is_audited_once_and_only_as_refused(app, patient):
    client = app.test_client()
    # A patient may not record a session's observations: 403 before any session is opened.
    refused = client.post(
        f"/api/v1/patients/me/sessions/{uuid.uuid4()}/observations",
        json={},
        headers=patient["headers"],
    )
    assert refused.status_code == 403
    assert _outcomes_of_request(app, refused.headers["X-Request-ID"]) == [("create", "denied")]
    # A logout with a token already revoked: 401, a failure and nothing else.
    first = client.post("/api/v1/auth/logout", json={}, headers=patient["headers"])
    assert first.status_code in (200, 204)
    again = client.post("/api/v1/auth/logout", json={}, headers=patient["headers"])
    assert again.status_code == 401
    assert _outcomes_of_request(app, again.headers["X-Request-ID"]) == [("logout", "failure")]


def test_an_error_before_any_session_ends_the_token_checks_transaction_at_once(app, patient):
    """Refused input on a write: the transaction the token check's query began (on SQLite
    BEGIN IMMEDIATE, the write lock) ends in the error handler, not at teardown."""
    open_at_finish: list[bool | None] = []

    def finished(_sender: Any, **_extra: Any) -> None:  # after every after_request hook
        connection = g.get("connection")
        open_at_finish.append(None if connection is None else connection.in_transaction())

    request_finished.connect(finished, app)
    try:
        response = app.test_client().post(
            "/api/v1/patients/me/mood-entries", json={"mood": "x"}, headers=patient["headers"]
        )
    finally:
        request_finished.disconnect(finished, app)
    assert response.status_code == 422
    assert open_at_finish == [False]


def test_a_request_checks_out_one_connection_and_returns_it(app, patient):
    engine = app.extensions["moodtrack"].engine
    client = app.test_client()
    headers = patient["headers"]
    out = {"now": 0, "most": 0}

    def checkout(*_args: Any) -> None:
        out["now"] += 1
        out["most"] = max(out["most"], out["now"])

    def checkin(*_args: Any) -> None:
        out["now"] -= 1

    requests = {
        "GET /me": lambda: client.get("/api/v1/me", headers=headers),
        "POST": lambda: client.post(
            "/api/v1/patients/me/mood-entries", json=_entry(), headers=headers
        ),
        "POST 422": lambda: client.post(
            "/api/v1/patients/me/mood-entries", json={"mood": "x"}, headers=headers
        ),
        "audited GET": lambda: client.get("/api/v1/patients/me/mood-entries", headers=headers),
        "GET 404": lambda: client.get(
            f"/api/v1/patients/{uuid.uuid4()}/mood-entries", headers=headers
        ),
        "GET 401": lambda: client.get("/api/v1/me", headers={"Authorization": "Bearer x"}),
    }
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        for name, send in requests.items():
            out["most"] = 0
            response = send()
            assert response.status_code < 500, name
            assert (out["most"], out["now"]) in ((1, 0), (0, 0)), (name, out)
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
