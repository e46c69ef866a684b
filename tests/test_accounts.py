"""Registration, password policy, login throttling and hashing, profiles, staff accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from models import LoginThrottle, Role, User
from models.passwords import Argon2Params, Passwords, common_passwords
from tests.conftest import (
    PASSWORD,
    auth,
    login,
    make_staff,
    register_patient,
    signup_code,
    unique_email,
)

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


def _register(client, **overrides):
    body = {
        "email": unique_email(),
        "password": PASSWORD,
        "display_name": "Pat",
        "timezone": "Europe/London",
    }
    body.update(overrides)
    return client.post(REGISTER, json=body)


def test_sign_up_gives_the_profile_without_password_once_confirmed(client):
    email = f"Mixed.Case-{unique_email()}"
    response = _register(client, email=email)
    assert response.status_code == 202
    assert response.get_json()["status"] == "confirmation_sent"
    assert response.headers["Cache-Control"] == "no-store"
    confirmed = client.post(
        "/api/v1/auth/register/confirm",
        json={"email": email.upper(), "code": signup_code(email), "password": PASSWORD},
    )
    assert confirmed.status_code == 201
    body = confirmed.get_json()
    assert body["role"] == "patient" and body["timezone"] == "Europe/London"
    assert body["email"] == email
    assert "password" not in body and "password_hash" not in body


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pass", "at least 12"),
        ("x" * 257, "at most 256"),
        ("qwertyuiop123", "common"),  # in the shipped list and 12+ long
        ("my moodtrack password", "name of this service"),
        ("MOODTRACK-is-great", "name of this service"),
    ],
)
def test_password_policy(client, password, reason):
    assert password.casefold() in common_passwords() or reason != "common"
    response = _register(client, password=password)
    assert response.status_code == 422
    messages = " ".join(response.get_json()["errors"]["password"])
    assert reason in messages
    assert password not in response.get_data(as_text=True)


def test_password_may_not_contain_email_or_its_local_part(client):
    email = f"rosalind@{__import__('uuid').uuid4().hex[:8]}.example.org"
    whole = _register(client, email=email, password=f"xx{email}xx")
    assert whole.status_code == 422 and "email" in " ".join(whole.get_json()["errors"]["password"])
    local = _register(client, email=email, password="I am ROSALIND and proud")
    assert local.status_code == 422
    assert "first part" in " ".join(local.get_json()["errors"]["password"])


def test_any_unicode_password_without_composition_rules(client):
    email = unique_email()
    password = "ünïcödé 🔑 pässwörd ли"
    register_patient(client, email=email, password=password)
    assert login(client, email, password)["access_token"]
    # Same characters, other normal form (NFD): the same password.
    import unicodedata

    assert login(client, email, unicodedata.normalize("NFD", password))["access_token"]
    assert _register(client, password="a" * 12).status_code == 202  # no composition rules


def test_shipped_list_has_ten_thousand_entries():
    entries = common_passwords()
    assert len(entries) == 10_000
    assert {"password", "123456", "qwerty"} <= entries


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../../etc/passwd"),
        ("display_name", ""),
        ("display_name", "x" * 101),
    ],
)
def test_register_validation(client, field, value):
    response = _register(client, **{field: value})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_register_rejects_unknown_and_missing_fields(client):
    unknown = _register(client, role="admin")
    assert unknown.status_code == 422 and "role" in unknown.get_json()["errors"]
    missing = client.post(REGISTER, json={"email": unique_email()})
    assert missing.status_code == 422
    assert {"password", "display_name", "timezone"} <= set(missing.get_json()["errors"])


def test_failed_login_is_identical_for_unknown_email_and_wrong_password(client):
    patient = register_patient(client)
    wrong = client.post(LOGIN, json={"email": patient["email"], "password": "wrong password!!"})
    unknown = client.post(LOGIN, json={"email": unique_email(), "password": "wrong password!!"})
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "instance"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]


def test_login_is_case_insensitive_on_email(client):
    patient = register_patient(client)
    assert login(client, patient["email"].upper())["access_token"]


def test_lockout_after_ten_failures_with_growing_delay(client, db):
    patient = register_patient(client)
    bad = {"email": patient["email"], "password": "wrong password!!"}
    for _ in range(10):
        assert client.post(LOGIN, json=bad).status_code == 401
    locked = client.post(LOGIN, json={"email": patient["email"], "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.mimetype == "application/problem+json"
    first_wait = int(locked.headers["Retry-After"])
    assert 0 < first_wait <= 30

    # The state lives in the database (so every worker sees it): expire the wait there.
    def expire() -> None:
        db.execute(
            update(LoginThrottle)
            .where(LoginThrottle.locked_until.is_not(None))
            .values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.commit()

    expire()
    assert client.post(LOGIN, json=bad).status_code == 401
    again = client.post(LOGIN, json={"email": patient["email"], "password": PASSWORD})
    assert again.status_code == 429
    assert int(again.headers["Retry-After"]) > first_wait

    # Once the wait is over, the right password works and clears the address's count.
    expire()
    assert login(client, patient["email"])["access_token"]
    assert client.post(LOGIN, json=bad).status_code == 401  # counting from one again


def test_password_is_rehashed_when_parameters_change(app, client, db):
    patient = register_patient(client)
    services = app.extensions["moodtrack"]
    old_hash = db.scalars(select(User.password_hash).where(User.email == patient["email"])).one()
    assert "$argon2id$" in old_hash and "m=1024,t=1" in old_hash
    original = services.passwords
    services.passwords = Passwords(Argon2Params(time_cost=2, memory_kib=2048, parallelism=1))
    try:
        login(client, patient["email"])
    finally:
        services.passwords = original
    db.expire_all()
    new_hash = db.scalars(select(User.password_hash).where(User.email == patient["email"])).one()
    assert new_hash != old_hash and "m=2048,t=2" in new_hash


def test_me_get_and_patch_with_etag(client):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    me = client.get("/api/v1/me", headers=headers)
    etag = me.headers["ETag"]
    assert (
        client.patch("/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers=headers).status_code
        == 428
    )
    stale = client.patch(
        "/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers={**headers, "If-Match": '"999"'}
    )
    assert stale.status_code == 412
    ok = client.patch(
        "/api/v1/me", json={"timezone": "Asia/Tokyo"}, headers={**headers, "If-Match": etag}
    )
    assert ok.status_code == 200 and ok.get_json()["timezone"] == "Asia/Tokyo"
    assert ok.headers["ETag"] != etag
    bad = client.patch(
        "/api/v1/me",
        json={"timezone": "Nowhere/Else"},
        headers={**headers, "If-Match": ok.headers["ETag"]},
    )
    assert bad.status_code == 422
    assert client.get("/api/v1/me", headers=headers).get_json()["timezone"] == "Asia/Tokyo"


def test_admin_creates_staff_and_others_cannot(app, client):
    admin = make_staff(app, role=Role.admin)
    admin_headers = auth(client, admin["email"])
    body = {
        "email": unique_email("doc"),
        "password": PASSWORD,
        "display_name": "Dr Who",
        "role": "clinician",
    }
    created = client.post("/api/v1/users", json=body, headers=admin_headers)
    assert created.status_code == 201 and created.get_json()["role"] == "clinician"
    assert auth(client, body["email"])  # the new clinician can log in
    patient = register_patient(client)
    patient_headers = auth(client, patient["email"])
    body["email"] = unique_email("doc")
    assert client.post("/api/v1/users", json=body, headers=patient_headers).status_code == 403
    assert client.post("/api/v1/users", json=body).status_code == 401
    body["role"] = "patient"
    assert client.post("/api/v1/users", json=body, headers=admin_headers).status_code == 422
