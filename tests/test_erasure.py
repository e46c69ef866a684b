"""DELETE /api/v1/me: the patient's account and every record about them go, for good."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import JSON, String, Text, Uuid, cast, func, inspect, or_, select

from api import create_app
from api.config import Settings
from models import Base, MoodEntry, Role
from models.audit import AuditEvent, AuditSubject
from tests.conftest import (
    PASSWORD,
    TEST_ARGON2,
    TEST_KEYS,
    ContractClient,
    _reset_database,
    auth,
    make_staff,
    register_patient,
)
from tests.privacy_data import new_marker, populate

ERASE = "/api/v1/me"


def _erase(client, headers, password=PASSWORD):
    return client.delete(ERASE, json={"password": password}, headers=headers)


def _traces(session, ids: set[uuid.UUID], strings: list[str]) -> dict[str, int]:
    """Rows, per table and column, holding one of ``ids`` or containing one of ``strings``."""
    found: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, Uuid):
                condition = column.in_(ids)
            elif isinstance(column.type, String | Text | JSON):
                text = cast(column, Text)
                condition = or_(*(text.contains(s, autoescape=True) for s in strings))
            else:
                continue
            count = session.scalar(select(func.count()).select_from(table).where(condition))
            if count:
                found[f"{table.name}.{column.name}"] = count
    return found


def _patient_ids(session, patient_id: uuid.UUID) -> set[uuid.UUID]:
    """The patient's id and the id of every row that has a UUID primary key and names them."""
    ids = {patient_id}
    for table in Base.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        refs = [c for c in table.columns if isinstance(c.type, Uuid) and c.foreign_keys]
        owners = [c for c in refs if any(fk.column.table.name == "users" for fk in c.foreign_keys)]
        if len(pk) == 1 and isinstance(pk[0].type, Uuid) and owners:
            rows = session.scalars(
                select(pk[0]).where(or_(*(c == patient_id for c in owners)))
            ).all()
            ids.update(rows)
    return ids


def test_every_migrated_table_is_in_the_metadata_the_scan_walks(app):
    # Else a table created only by a migration could keep data the scan never looks at.
    engine = app.extensions["moodtrack"].engine
    actual = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert actual <= set(Base.metadata.tables), actual - set(Base.metadata.tables)


def test_erasure_leaves_no_row_about_the_patient(app, client, db):
    marker = new_marker()
    patient = populate(app, client, marker)
    pid = uuid.UUID(patient["id"])
    bystander = populate(app, client, new_marker())
    before = db.scalar(
        select(func.count())
        .select_from(MoodEntry)
        .where(MoodEntry.patient_id == uuid.UUID(bystander["id"]))
    )
    ids = _patient_ids(db, pid)
    assert uuid.UUID(patient["entry_id"]) in ids and uuid.UUID(patient["session_id"]) in ids
    assert _traces(db, ids, [marker, patient["email"]])  # the scan does see the data

    # A wrong password erases nothing: 422 on password, like a password change.
    wrong = _erase(client, patient["headers"], "not the password")
    assert wrong.status_code == 422 and list(wrong.get_json()["errors"]) == ["password"]
    assert "not the password" not in wrong.get_data(as_text=True)
    assert db.get(MoodEntry, uuid.UUID(patient["entry_id"])) is not None

    response = _erase(client, patient["headers"])
    assert response.status_code == 204, response.get_json()
    db.expire_all()
    assert _traces(db, ids, [marker, patient["email"]]) == {}

    # Every token of the patient fails on the next request; the account cannot log in.
    assert client.get("/api/v1/me", headers=patient["headers"]).status_code == 401
    assert _erase(client, patient["headers"]).status_code == 401
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": patient["refresh_token"]})
    assert refresh.status_code == 401
    login = client.post(
        "/api/v1/auth/login", json={"email": patient["email"], "password": PASSWORD}
    )
    assert login.status_code == 401
    # The clinician no longer sees the patient or their alerts; the bystander is untouched.
    ch = patient["clinician_headers"]
    assert client.get(f"/api/v1/patients/{pid}", headers=ch).status_code == 404
    assert all(
        a["patient_id"] != str(pid)
        for a in client.get("/api/v1/alerts?status=all", headers=ch).get_json()["items"]
    )
    after = db.scalar(
        select(func.count())
        .select_from(MoodEntry)
        .where(MoodEntry.patient_id == uuid.UUID(bystander["id"]))
    )
    assert after == before
    # The email is free again.
    assert register_patient(client, email=patient["email"])["email"] == patient["email"]


def test_only_a_patient_erases_and_only_with_a_body(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    for role in (Role.clinician, Role.admin):
        staff = make_staff(app, role=role)
        assert _erase(client, auth(client, staff["email"])).status_code == 403
    assert client.delete(ERASE, json={"password": PASSWORD}).status_code == 401
    assert client.delete(ERASE, headers=ph).status_code == 415
    assert client.delete(ERASE, json={}, headers=ph).status_code == 422
    extra = client.delete(ERASE, json={"password": PASSWORD, "why": "x"}, headers=ph)
    assert extra.status_code == 422
    assert client.get("/api/v1/me", headers=ph).status_code == 200  # nothing happened


@pytest.fixture
def file_app(app: Flask, settings: Settings) -> Iterator[tuple[Flask, Path]]:
    """An app on its own SQLite file that really commits, so the file's bytes can be read."""
    del app  # the session app sets up the contract validator the client uses
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "erase.db"
        url = f"sqlite:///{path}"
        _reset_database(url)
        application = create_app(
            Settings(
                database_url=url,
                signing_keys=dict(TEST_KEYS),
                active_kid="k2",
                argon2=TEST_ARGON2,
                instance_path=Path(tmp),
                testing=True,
                smtp_url=settings.smtp_url,
            )
        )
        application.test_client_class = ContractClient
        yield application, path
        application.extensions["moodtrack"].engine.dispose()


def _hits(path: Path, needle: bytes) -> dict[str, int]:
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]
    return {f.name: f.read_bytes().count(needle) for f in files if f.exists()}


def test_no_trace_in_the_sqlite_files(file_app):
    # file_app is always a SQLite file, whatever TEST_DATABASE_URL says: its bytes are read.
    application, path = file_app
    client = application.test_client()
    marker = new_marker()
    patient = populate(application, client, marker)
    needle = marker.encode()
    assert sum(_hits(path, needle).values()) > 0  # the scan finds the marker while it is there
    email = patient["email"].encode()

    assert _erase(client, patient["headers"]).status_code == 204
    assert _hits(path, needle) == {name: 0 for name in _hits(path, needle)}
    assert sum(_hits(path, email).values()) == 0
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed and truncated
    with application.extensions["moodtrack"].engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def _audit_rows_holding(session, needles: set[str], since_id: int) -> list[tuple[int, str]]:
    """(row id, column) of every audit row after ``since_id`` with a needle in any column,
    compared as text in every spelling a UUID has (hyphenated, bare hex, any case)."""
    found = []
    table = AuditEvent.__table__
    rows = session.execute(select(table).where(table.c.id > since_id)).mappings().all()
    for row in rows:
        for column, value in row.items():
            if value is None:
                continue
            text = str(value).lower()
            spellings = {text, text.replace("-", "")}
            if any(n in s for n in needles for s in spellings):
                found.append((row["id"], column))
    return found


def test_after_erasure_no_audit_row_holds_the_patients_id(app, client, db):
    first = db.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))
    patient = populate(app, client, new_marker())
    pid = uuid.UUID(patient["id"])
    needles = {str(pid), pid.hex}
    pseudonym = db.scalar(select(AuditSubject.pseudonym).where(AuditSubject.user_id == pid))
    # The scan reads every column: it finds the pseudonym (actor, patient) and a record id.
    assert {c for _, c in _audit_rows_holding(db, {pseudonym.hex}, first)} >= {"actor", "patient"}
    assert _audit_rows_holding(db, {uuid.UUID(patient["entry_id"]).hex}, first)
    # Audit rows hold pseudonyms only, from the sign-up on: never the id itself. The account
    # is made when the emailed code is confirmed: that row names it by its pseudonym.
    confirmed = db.scalars(
        select(AuditEvent).where(AuditEvent.id > first, AuditEvent.action == "register_confirmed")
    ).one()
    assert confirmed.resource_id == str(pseudonym) and confirmed.actor == pseudonym
    assert _audit_rows_holding(db, needles, first) == []

    assert _erase(client, patient["headers"]).status_code == 204
    db.expire_all()
    kept = db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.id > first))
    assert kept > 20  # the trail stays
    assert _audit_rows_holding(db, needles, first) == []
    # Nothing maps the pseudonym back any more.
    assert db.scalar(select(func.count()).where(AuditSubject.pseudonym == pseudonym)) == 0


def test_an_admins_work_on_a_staff_account_names_it_by_pseudonym(app, client, db):
    first = db.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    created = client.post(
        "/api/v1/users",
        json={
            "email": f"dr-{uuid.uuid4().hex[:8]}@example.org",
            "password": PASSWORD,
            "display_name": "Dr Who",
            "role": "clinician",
        },
        headers=admin,
    ).get_json()
    disabled = client.patch(
        f"/api/v1/users/{created['id']}",
        json={"disabled": True},
        headers={**admin, "If-Match": '"1"'},
    )
    assert disabled.status_code == 200
    staff = uuid.UUID(created["id"])
    pseudonym = db.scalar(select(AuditSubject.pseudonym).where(AuditSubject.user_id == staff))
    rows = db.scalars(
        select(AuditEvent).where(AuditEvent.id > first, AuditEvent.resource_type == "users")
    ).all()
    assert [(r.action, r.resource_id) for r in rows] == [
        ("create", str(pseudonym)),
        ("update", str(pseudonym)),
    ]
    assert _audit_rows_holding(db, {str(staff), staff.hex}, first) == []
