"""The audit trail: every read and write of health data and every auth event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, event, select, text
from sqlalchemy.exc import OperationalError

from models import Role, User
from models.audit import AuditEvent, AuditSubject
from tests.conftest import PASSWORD, auth, link, make_staff, register_patient, unique_email

_FIRST_ID = {"value": 0}


@pytest.fixture(autouse=True)
def _only_this_tests_rows(db):
    """Other tests may have committed audit rows for real; look only at this test's."""
    from sqlalchemy import func

    _FIRST_ID["value"] = db.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


def _events(db, **filters):
    db.expire_all()
    stmt = select(AuditEvent).where(AuditEvent.id > _FIRST_ID["value"]).order_by(AuditEvent.id)
    for key, value in filters.items():
        stmt = stmt.where(getattr(AuditEvent, key) == value)
    return db.scalars(stmt).all()


def _pseudonym(db, user_id):
    return db.scalar(
        select(AuditSubject.pseudonym).where(AuditSubject.user_id == uuid.UUID(str(user_id)))
    )


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    clinician = make_staff(app)
    ch = auth(client, clinician["email"])
    link(client, ch, ph)
    return {"patient": patient, "ph": ph, "clinician": clinician, "ch": ch}


def _entry(client, headers, note="fine"):
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return client.post(
        "/api/v1/patients/me/mood-entries",
        json={"occurred_at": at, "mood": 5, "note": note},
        headers=headers,
    )


def test_a_write_is_audited_with_who_what_whom_where(db, client, care):
    created = _entry(client, care["ph"]).get_json()
    mine = _pseudonym(db, care["patient"]["id"])
    (row,) = _events(db, resource_type="mood-entries", patient=mine)
    assert (row.action, row.outcome, row.resource_id) == ("create", "success", created["id"])
    assert row.patient == _pseudonym(db, care["patient"]["id"])
    assert row.actor == row.patient and row.actor_role == "patient"
    assert row.request_id and row.client_address == "127.0.0.1"
    # No user id is stored in the trail itself.
    assert care["patient"]["id"] not in {str(row.actor), str(row.patient)}


def test_reads_by_a_clinician_are_audited_per_patient(db, client, care):
    other = register_patient(client)
    link(client, care["ch"], auth(client, other["email"]))
    client.get(f"/api/v1/patients/{care['patient']['id']}/mood-entries", headers=care["ch"])
    reads = _events(
        db,
        action="read",
        resource_type="mood-entries",
        actor=_pseudonym(db, care["clinician"]["id"]),
    )
    assert [r.patient for r in reads] == [_pseudonym(db, care["patient"]["id"])]
    assert reads[0].actor == _pseudonym(db, care["clinician"]["id"])
    client.get("/api/v1/patients", headers=care["ch"])
    listed = _events(
        db, action="read", resource_type="patients", actor=_pseudonym(db, care["clinician"]["id"])
    )
    assert {r.patient for r in listed} == {
        _pseudonym(db, care["patient"]["id"]),
        _pseudonym(db, other["id"]),
    }


def test_auth_events(db, client, care):
    email = care["patient"]["email"]
    client.post("/api/v1/auth/login", json={"email": email, "password": "wrong password!!"})
    client.post("/api/v1/auth/login", json={"email": unique_email(), "password": "nope nope nope"})
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    tokens = tokens.get_json()
    client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    logins = [
        (e.action, e.outcome)
        for e in _events(db)
        if e.action in ("login", "refresh", "logout", "register", "link_created", "invite_created")
    ]
    assert ("register", "success") in logins and ("link_created", "success") in logins
    assert ("invite_created", "success") in logins
    assert logins.count(("login", "failure")) == 2
    assert ("login", "success") in logins and ("refresh", "success") in logins
    assert ("logout", "success") in logins


def test_link_end_and_denied_access_are_audited(app, db, client, care):
    link_id = client.get("/api/v1/care-links", headers=care["ph"]).get_json()["items"][0]["id"]
    client.delete(f"/api/v1/care-links/{link_id}", headers=care["ph"])
    assert _events(db, action="link_ended")[0].outcome == "success"
    denied = client.get(
        f"/api/v1/patients/{care['patient']['id']}/mood-entries", headers=care["ch"]
    )
    assert denied.status_code == 404
    (row,) = _events(db, outcome="denied")
    assert row.actor == _pseudonym(db, care["clinician"]["id"]) and row.patient is None


def test_a_read_whose_audit_cannot_be_written_answers_503(client, care, monkeypatch):
    import api.audit

    def broken(**kwargs):
        raise OperationalError("INSERT", {}, Exception("disk full"))

    _entry(client, care["ph"], note="SECRET-NOTE")
    monkeypatch.setattr(api.audit, "record", broken)
    response = client.get("/api/v1/patients/me/mood-entries", headers=care["ph"])
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "SECRET-NOTE" not in response.get_data(as_text=True)


def test_a_write_whose_audit_fails_is_not_stored(db, client, care, monkeypatch):
    import api.audit

    def broken(**kwargs):
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(api.audit, "record", broken)
    response = _entry(client, care["ph"])
    assert response.status_code == 500
    monkeypatch.undo()
    listed = client.get("/api/v1/patients/me/mood-entries", headers=care["ph"]).get_json()
    assert listed["items"] == []


def test_the_patient_sees_who_read_their_data(client, care):
    client.get(f"/api/v1/patients/{care['patient']['id']}/course", headers=care["ch"])
    log = client.get("/api/v1/patients/me/access-log", headers=care["ph"]).get_json()["items"]
    reads = [e for e in log if e["resource_type"] == "course"]
    assert (
        reads[0]["actor_display_name"] == "Dr clinician" and reads[0]["actor_role"] == "clinician"
    )
    assert (
        client.get(
            f"/api/v1/patients/{care['patient']['id']}/access-log", headers=care["ch"]
        ).status_code
        == 403
    )
    assert client.get("/api/v1/patients/me/access-log").status_code == 401


def test_admin_searches_the_trail_and_no_one_else_can(app, db, client, care):
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    _entry(client, care["ph"])
    found = client.get(
        f"/api/v1/audit-events?patient_id={care['patient']['id']}&action=create", headers=admin
    ).get_json()["items"]
    assert [e["resource_type"] for e in found] == ["mood-entries"]
    assert found[0]["patient_id"] == care["patient"]["id"]
    by_actor = client.get(
        f"/api/v1/audit-events?actor_id={care['clinician']['id']}", headers=admin
    ).get_json()["items"]
    assert by_actor and all(e["actor_id"] == care["clinician"]["id"] for e in by_actor)
    assert client.get("/api/v1/audit-events", headers=care["ch"]).status_code == 403
    assert client.get("/api/v1/audit-events", headers=care["ph"]).status_code == 403
    assert client.get("/api/v1/audit-events?patient_id=x", headers=admin).status_code == 422


def test_erasing_a_user_pseudonymises_their_audit_rows(db, client, care):
    _entry(client, care["ph"])
    before = len(_events(db))
    db.execute(delete(User).where(User.id == uuid.UUID(care["patient"]["id"])))
    db.commit()
    assert len(_events(db)) == before  # kept
    assert _pseudonym(db, care["patient"]["id"]) is None  # no longer linkable


def test_the_application_never_updates_or_deletes_audit_rows(app, db, client, care):
    statements: list[str] = []
    engine = app.extensions["moodtrack"].engine

    def capture(conn, cursor, statement, *args):
        statements.append(statement.lower())

    event.listen(engine, "before_cursor_execute", capture)
    try:
        _entry(client, care["ph"])
        client.get(f"/api/v1/patients/{care['patient']['id']}/course", headers=care["ch"])
        client.post(
            "/api/v1/auth/login",
            json={"email": care["patient"]["email"], "password": "wrong password!!"},
        )
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    touching = [s for s in statements if "audit_events" in s]
    assert touching and all(s.lstrip().startswith(("insert", "select")) for s in touching)
    if db.get_bind().dialect.name == "postgresql":
        # The service's role may append to the trail but never rewrite it.
        db.execute(text("SET LOCAL ROLE moodtrack_app"))
        db.execute(text("SELECT count(*) FROM audit_events"))
        with pytest.raises(Exception, match="permission denied"), db.begin_nested():
            db.execute(text("UPDATE audit_events SET outcome = 'x'"))
        with pytest.raises(Exception, match="permission denied"), db.begin_nested():
            db.execute(text("DELETE FROM audit_events"))


def _entry_for(user_id):
    from models.audit import Entry

    return Entry(
        action="read",
        resource_type="trends",
        resource_id=None,
        outcome="success",
        actor_id=user_id,
        actor_role="patient",
        patient_id=user_id,
        request_id=None,
        client_address=None,
    )


def test_a_rolled_back_first_mapping_leaves_no_stale_pseudonym(db):
    from models.audit import record
    from tests import factories as f

    user = f.patient(db)
    db.commit()
    record(db=db, entries=[_entry_for(user.id)])  # creates the mapping in this transaction
    db.rollback()  # ... which then fails
    assert _pseudonym(db, user.id) is None
    record(db=db, entries=[_entry_for(user.id)])
    db.commit()
    row = _events(db)[-1]
    assert row.actor == row.patient == _pseudonym(db, user.id) is not None


def test_after_erasure_new_rows_about_the_user_name_nobody(db):
    from models.audit import record
    from tests import factories as f

    user = f.patient(db)
    db.commit()
    record(db=db, entries=[_entry_for(user.id)])
    db.commit()
    record(db=db, entries=[_entry_for(user.id)])  # the mapping is now known to this process
    db.commit()
    known = _events(db)[-1].patient
    assert known is not None
    # Another worker erases the user: this process is not told.
    db.execute(delete(User).where(User.id == user.id))
    db.commit()
    record(db=db, entries=[_entry_for(user.id)])
    db.commit()
    row = _events(db)[-1]
    assert row.actor is None and row.patient is None
