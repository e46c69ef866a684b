"""Organisations: the operator's clinics, their staff, scoping of what clinicians see, and the
migration that moves a single-clinic database into one organisation."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text, update

from api.cli import alembic_config
from api.db import make_engine
from models.accounts import Role
from models.care import patients_visible_to
from models.organisations import MemberRole, Membership
from tests.conftest import (
    PASSWORD,
    auth,
    join,
    link,
    make_organisation,
    make_staff,
    register_patient,
    unique_email,
)

API = "/api/v1"


def _org_admin(app, client, organisation_id=None):
    organisation_id = organisation_id or make_organisation(app)
    admin = make_staff(app, organisation_id=organisation_id, member_role=MemberRole.org_admin)
    return organisation_id, auth(client, admin["email"]), admin


def _member_etag(client, headers, organisation_id, user_id):
    members = client.get(f"{API}/organisations/{organisation_id}/members", headers=headers)
    assert members.status_code == 200
    found = [m for m in members.get_json()["items"] if m["user_id"] == user_id]
    assert len(found) == 1
    return found[0]


def test_operator_creates_an_organisation_whose_first_admin_takes_the_invite(app, client):
    operator = auth(client, make_staff(app, role=Role.admin)["email"])
    email = unique_email("head")
    created = client.post(
        f"{API}/organisations",
        json={"name": "Riverside Clinic", "first_admin": {"email": email}},
        headers=operator,
    )
    assert created.status_code == 201
    body = created.get_json()
    assert body["name"] == "Riverside Clinic" and body["members"] == 0
    invite = body["first_admin_invite"]
    assert invite["role"] == "org_admin" and invite["email"] == email
    accepted = client.post(
        f"{API}/auth/staff-invites/accept",
        json={"code": invite["code"].lower(), "password": PASSWORD, "display_name": "Head"},
    )
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["role"] == "org_admin"
    head = auth(client, email)
    members = client.get(f"{API}/organisations/{body['id']}/members", headers=head)
    assert [m["email"] for m in members.get_json()["items"]] == [email]
    # The code is spent.
    again = client.post(
        f"{API}/auth/staff-invites/accept",
        json={"code": invite["code"], "password": PASSWORD, "display_name": "Head"},
    )
    assert again.status_code == 422 and "code" in again.get_json()["errors"]
    # The operator sees the organisation, not its patients.
    listed = client.get(f"{API}/organisations", headers=operator).get_json()["items"]
    assert any(o["id"] == body["id"] and o["members"] == 1 for o in listed)
    assert client.get(f"{API}/patients", headers=operator).status_code == 403


def test_an_existing_staff_account_joins_a_second_organisation_with_its_password(app, client):
    first = make_staff(app)
    second_org, admin_headers, _ = _org_admin(app, client)
    code = client.post(
        f"{API}/organisations/{second_org}/staff-invites",
        json={"email": first["email"].upper(), "role": "clinician"},
        headers=admin_headers,
    ).get_json()["code"]
    wrong = client.post(
        f"{API}/auth/staff-invites/accept", json={"code": code, "password": "not my password!"}
    )
    assert wrong.status_code == 422 and "password" in wrong.get_json()["errors"]
    # A refused attempt spends nothing: the same code still works with the right password.
    ok = client.post(f"{API}/auth/staff-invites/accept", json={"code": code, "password": PASSWORD})
    assert ok.status_code == 201 and ok.get_json()["user_id"] == first["id"]
    # Working in two organisations, the clinician names one for a patient invite.
    headers = auth(client, first["email"])
    unnamed = client.post(f"{API}/invites", headers=headers)
    assert unnamed.status_code == 422 and "organisation_id" in unnamed.get_json()["errors"]
    named = client.post(f"{API}/invites", json={"organisation_id": second_org}, headers=headers)
    assert named.status_code == 201 and named.get_json()["organisation_id"] == second_org
    patient = auth(client, register_patient(client)["email"])
    linked = client.post(
        f"{API}/care-links", json={"code": named.get_json()["code"]}, headers=patient
    )
    assert linked.get_json()["organisation_id"] == second_org
    elsewhere = make_organisation(app)
    refused = client.post(f"{API}/invites", json={"organisation_id": elsewhere}, headers=headers)
    assert refused.status_code == 422


def test_a_patient_account_cannot_be_made_staff(app, client):
    patient = register_patient(client)
    organisation, admin_headers, _ = _org_admin(app, client)
    code = client.post(
        f"{API}/organisations/{organisation}/staff-invites",
        json={"email": patient["email"], "role": "clinician"},
        headers=admin_headers,
    ).get_json()["code"]
    response = client.post(
        f"{API}/auth/staff-invites/accept", json={"code": code, "password": PASSWORD}
    )
    assert response.status_code == 409


def test_clinicians_see_patients_only_through_an_organisation_they_are_active_in(app, client):
    organisation, admin_headers, _ = _org_admin(app, client)
    doctor = make_staff(app, organisation_id=organisation)
    outsider = make_staff(app, organisation_id=make_organisation(app))
    dh, oh = auth(client, doctor["email"]), auth(client, outsider["email"])
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    link(client, dh, ph)
    client.post(
        f"{API}/patients/me/assessments",
        json={
            "instrument": "phq9",
            "answers": [0] * 8 + [2],
            "occurred_at": "2026-11-27T10:00:00Z",
        },
        headers=ph,
    )
    url = f"{API}/patients/{patient['id']}"
    assert client.get(url, headers=dh).status_code == 200
    assert client.get(url, headers=oh).status_code == 404
    assert client.get(f"{API}/patients", headers=oh).get_json()["items"] == []
    assert client.get(f"{API}/alerts", headers=oh).get_json()["items"] == []
    assert len(client.get(f"{API}/alerts", headers=dh).get_json()["items"]) == 1

    # Disabled in the organisation: the patient, the cohort row and the alerts go at once.
    member = _member_etag(client, admin_headers, organisation, doctor["id"])
    member_url = f"{API}/organisations/{organisation}/members/{doctor['id']}"
    disabled = client.patch(
        member_url, json={"disabled": True}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert disabled.status_code == 200 and disabled.get_json()["disabled"] is True
    assert member["disabled"] is False
    assert client.get(url, headers=dh).status_code == 404
    assert client.get(f"{API}/patients", headers=dh).get_json()["items"] == []
    assert client.get(f"{API}/alerts", headers=dh).get_json()["items"] == []
    assert client.get(f"{API}/care-links", headers=dh).get_json()["items"] == []
    enabled = client.patch(
        member_url,
        json={"disabled": False},
        headers={**admin_headers, "If-Match": disabled.headers["ETag"]},
    )
    assert enabled.status_code == 200
    assert client.get(url, headers=dh).status_code == 200

    # Taken out of the organisation: the links there end.
    removed = client.delete(
        member_url, headers={**admin_headers, "If-Match": enabled.headers["ETag"]}
    )
    assert removed.status_code == 204
    assert client.get(f"{API}/care-links", headers=ph).get_json()["items"] == []


def test_the_last_org_admin_stays(app, client):
    organisation, admin_headers, admin = _org_admin(app, client)
    url = f"{API}/organisations/{organisation}/members/{admin['id']}"
    for change in ({"role": "clinician"}, {"disabled": True}):
        response = client.patch(url, json=change, headers={**admin_headers, "If-Match": '"1"'})
        assert response.status_code == 409
    assert client.delete(url, headers={**admin_headers, "If-Match": '"1"'}).status_code == 409
    second = make_staff(app, organisation_id=organisation, member_role=MemberRole.org_admin)
    assert second["id"]
    demoted = client.patch(
        url, json={"role": "clinician"}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert demoted.status_code == 200 and demoted.get_json()["role"] == "clinician"
    # No longer an org admin: the member list is closed to them (403), not hidden (404).
    assert (
        client.get(f"{API}/organisations/{organisation}/members", headers=admin_headers).status_code
        == 403
    )


def test_member_update_needs_a_change(app, client):
    organisation, admin_headers, admin = _org_admin(app, client)
    url = f"{API}/organisations/{organisation}/members/{admin['id']}"
    response = client.patch(url, json={}, headers={**admin_headers, "If-Match": '"1"'})
    assert response.status_code == 422


def test_a_clinician_in_two_organisations_keeps_each_cohort_to_its_links(app, client):
    first_org, second_org = make_organisation(app), make_organisation(app)
    doctor = make_staff(app, organisation_id=first_org)
    join(app, doctor["id"], second_org, MemberRole.org_admin)
    dh = auth(client, doctor["email"])
    # An org admin in the second organisation is nobody's clinician there: one organisation
    # to invite into, so no body is needed.
    invite = client.post(f"{API}/invites", headers=dh)
    assert invite.get_json()["organisation_id"] == first_org


# --------------------------------------------------------------------------- migration


@pytest.fixture
def scratch_url() -> Iterator[str]:
    """An empty database of the suite's kind: a SQLite file, or a schema of its own on the
    PostgreSQL server the suite uses."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'migration.db'}"
        return
    schema = f"migration_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _rows_at_0006(connection) -> dict[str, str]:
    # SQLite keeps a UUID as 32 hex digits, PostgreSQL as uuid (which takes the usual text).
    form = (lambda u: u.hex) if connection.dialect.name == "sqlite" else str
    names = ("patient", "clinician", "admin", "link", "invite")
    ids = {name: form(uuid.uuid4()) for name in names}
    users = "INSERT INTO users (id, email, email_key, role, display_name, timezone, password_hash,"
    users += " created_at, updated_at, version, failed_logins) VALUES (:id, :e, :e, :role, 'X',"
    users += " 'UTC', 'h', :now, :now, 1, 0)"
    now = "2026-01-01 00:00:00"
    for name, role in (("patient", "patient"), ("clinician", "clinician"), ("admin", "admin")):
        email = f"{name}-{ids[name][:6]}@example.org"
        connection.execute(text(users), {"id": ids[name], "e": email, "role": role, "now": now})
    connection.execute(
        text(
            "INSERT INTO care_links (id, patient_id, clinician_id, created_at)"
            " VALUES (:id, :p, :c, :now)"
        ),
        {"id": ids["link"], "p": ids["patient"], "c": ids["clinician"], "now": now},
    )
    connection.execute(
        text(
            "INSERT INTO invites (id, clinician_id, code_hash, created_at, expires_at)"
            " VALUES (:id, :c, 'abc', :now, :now)"
        ),
        {"id": ids["invite"], "c": ids["clinician"], "now": now},
    )
    return {k: v.replace("-", "") for k, v in ids.items()}


def test_the_migration_moves_existing_data_into_one_default_organisation(scratch_url):
    config = alembic_config(scratch_url)
    command.upgrade(config, "0006")
    engine = make_engine(scratch_url)
    try:
        with engine.begin() as connection:
            ids = _rows_at_0006(connection)
        command.upgrade(config, "head")
        with engine.connect() as connection:
            organisations = connection.execute(text("SELECT id, name FROM organisations")).all()
            assert [name for _id, name in organisations] == ["Default organisation"]
            org = str(organisations[0][0]).replace("-", "")
            members = connection.execute(text("SELECT user_id, role FROM memberships")).all()
            assert [(str(u).replace("-", ""), r) for u, r in members] == [
                (ids["clinician"], "clinician")
            ]
            for table in ("care_links", "invites"):
                owners = connection.execute(text(f"SELECT organisation_id FROM {table}")).all()
                assert [str(o).replace("-", "") for (o,) in owners] == [org]
            # Every row survived the table copies, and every reference still resolves.
            assert connection.execute(text("SELECT count(*) FROM users")).scalar() == 3
            if engine.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        engine.dispose()


def test_the_migration_of_a_database_without_clinicians_makes_no_organisation(scratch_url):
    command.upgrade(alembic_config(scratch_url), "head")
    engine = make_engine(scratch_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM organisations")).scalar() == 0
    finally:
        engine.dispose()


def test_cli_creates_staff_in_a_named_organisation(tmp_path):
    env = {
        **os.environ,
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "1024",
        "MOODTRACK_ARGON2_PARALLELISM": "1",
    }

    def create(email: str, role: str, *extra: str) -> subprocess.CompletedProcess[str]:
        command = ["users", "create", "--email", email, "--role", role, "--password-stdin"]
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *command, *extra],
            input="a long clinic passphrase\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    head = create("head@example.org", "org_admin", "--organisation", "Lakeside")
    assert head.returncode == 0, head.stderr
    assert "org_admin" in head.stdout and "(Lakeside)" in head.stdout
    # With one organisation, --organisation may be left out.
    doc = create("doc@example.org", "clinician")
    assert doc.returncode == 0 and "(Lakeside)" in doc.stdout
    assert create("doc2@example.org", "clinician", "--organisation", "Hillside").returncode == 0
    ambiguous = create("doc3@example.org", "clinician")
    assert ambiguous.returncode == 1 and "organisation" in ambiguous.stderr
    operator = create("op@example.org", "admin")
    assert operator.returncode == 0 and "organisation" not in operator.stdout


def test_cli_purges_stale_login_counts(tmp_path):
    env = {
        **os.environ,
        "MOODTRACK_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'purge.db'}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "db", "purge"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged 0 expired token rows and 0 stale login counts")


def test_patients_visible_to_is_the_scoping_rule_other_code_can_call(app, client, db):
    first, second = make_organisation(app), make_organisation(app)
    doctor = make_staff(app, organisation_id=first)
    join(app, doctor["id"], second, MemberRole.clinician)
    dh = auth(client, doctor["email"])
    patients = {}
    for organisation in (first, second):
        patient = register_patient(client)
        code = client.post(
            f"{API}/invites", json={"organisation_id": organisation}, headers=dh
        ).get_json()["code"]
        ph = auth(client, patient["email"])
        client.post(f"{API}/care-links", json={"code": code}, headers=ph)
        patients[organisation] = uuid.UUID(patient["id"])
    doctor_id = uuid.UUID(doctor["id"])

    def visible(organisation=None):
        rows = db.execute(
            patients_visible_to(
                clinician_id=doctor_id,
                organisation_id=uuid.UUID(organisation) if organisation else None,
            )
        ).all()
        return {(p, str(o)) for p, o in rows}

    assert visible() == {(patients[first], first), (patients[second], second)}
    assert visible(second) == {(patients[second], second)}
    # The cohort narrows to one organisation on request; not to someone else's.
    cohort = client.get(f"{API}/patients?organisation_id={second}", headers=dh).get_json()
    assert [row["id"] for row in cohort["items"]] == [str(patients[second])]
    assert len(client.get(f"{API}/patients", headers=dh).get_json()["items"]) == 2
    other = client.get(f"{API}/patients?organisation_id={make_organisation(app)}", headers=dh)
    assert other.status_code == 422 and "organisation_id" in other.get_json()["errors"]
    # Disabled in one organisation: its patients drop out, the other's stay.
    db.execute(
        update(Membership)
        .where(Membership.user_id == doctor_id, Membership.organisation_id == uuid.UUID(first))
        .values(disabled_at=datetime.now(UTC))
    )
    db.flush()
    assert visible() == {(patients[second], second)}
