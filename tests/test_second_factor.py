"""Two-factor sign-in: enrolment, the second step of a login, replay, recovery codes, turning it
off, staff who must use it, an org admin's reset, and the limit on guessing codes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select

from api import create_app
from api.config import RateLimits, Settings
from models.accounts import Role
from models.organisations import MemberRole
from models.second_factor import RecoveryCode, SecondFactor
from models.secretbox import SecretUnreadable
from tests.conftest import (
    PASSWORD,
    ContractClient,
    auth,
    bearer,
    make_organisation,
    make_staff,
    register_patient,
    unique_email,
)

API = "/api/v1"
LOGIN = f"{API}/auth/login"


def _enrol(client, headers) -> str:
    response = client.post(f"{API}/auth/2fa/enrol", json={"password": PASSWORD}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["secret"]


def _turn_on(client, headers) -> tuple[str, list[str]]:
    secret = _enrol(client, headers)
    confirmed = client.post(
        f"{API}/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    return secret, confirmed.get_json()["recovery_codes"]


def _next_code(secret: str, steps: int = 1) -> str:
    """A code of a later time-step than any used so far (each is accepted once)."""
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * steps))


def _login_step(client, email: str) -> str:
    response = client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert body["mfa_required"] is True and "access_token" not in body
    assert "refresh_token" not in body
    return body["mfa_token"]


def test_enrolment_needs_the_password_and_gives_an_otpauth_uri(client, db):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    wrong = client.post(
        f"{API}/auth/2fa/enrol", json={"password": "wrong password"}, headers=headers
    )
    assert wrong.status_code == 422 and "password" in wrong.get_json()["errors"]
    response = client.post(f"{API}/auth/2fa/enrol", json={"password": PASSWORD}, headers=headers)
    body = response.get_json()
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["moodtrack"]
    assert body["digits"] == 6 and body["period"] == 30
    # Not on until confirmed: login still answers tokens.
    assert (
        "access_token"
        in client.post(LOGIN, json={"email": patient["email"], "password": PASSWORD}).get_json()
    )
    # At rest the seed is encrypted and bound to its account.
    stored = db.get(SecondFactor, uuid.UUID(patient["id"]))
    assert body["secret"] not in stored.secret and stored.secret.startswith("v1:")


def test_the_seed_is_bound_to_its_account(app, client, db):
    patient = register_patient(client)
    _enrol(client, auth(client, patient["email"]))
    stored = db.get(SecondFactor, uuid.UUID(patient["id"])).secret
    box = app.extensions["moodtrack"].secret_box
    with pytest.raises(SecretUnreadable):
        box.decrypt(stored, context=b"totp:" + uuid.uuid4().bytes)


def test_login_with_two_factor_on_needs_a_code_used_once(client):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    early = client.post(f"{API}/auth/2fa/confirm", json={"code": "000000"}, headers=headers)
    assert early.status_code == 409  # nothing enrolled yet
    secret = _enrol(client, headers)
    wrong = client.post(f"{API}/auth/2fa/confirm", json={"code": "000000"}, headers=headers)
    assert wrong.status_code == 422 and "code" in wrong.get_json()["errors"]
    confirmed = client.post(
        f"{API}/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers
    )
    codes = confirmed.get_json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert (
        client.post(
            f"{API}/auth/2fa/enrol", json={"password": PASSWORD}, headers=headers
        ).status_code
        == 409
    )

    step = _login_step(client, patient["email"])
    # The step token is no access token.
    assert client.get(f"{API}/me", headers=bearer(step)).status_code == 401
    bad = client.post(f"{API}/auth/2fa/verify", json={"mfa_token": step, "code": "123456"})
    assert bad.status_code == 401
    code = _next_code(secret)
    ok = client.post(f"{API}/auth/2fa/verify", json={"mfa_token": step, "code": code})
    assert (
        ok.status_code == 200
        and client.get(f"{API}/me", headers=bearer(ok.get_json())).status_code == 200
    )
    # The same code again, within its window, from a fresh login step: refused.
    replay = client.post(
        f"{API}/auth/2fa/verify",
        json={"mfa_token": _login_step(client, patient["email"]), "code": code},
    )
    assert replay.status_code == 401
    # And the step token of the successful sign-in is spent.
    again = client.post(
        f"{API}/auth/2fa/verify", json={"mfa_token": step, "code": _next_code(secret, 2)}
    )
    assert again.status_code == 401


def test_a_recovery_code_works_once(client, db):
    patient = register_patient(client)
    _secret, codes = _turn_on(client, auth(client, patient["email"]))
    hashes = db.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.user_id == uuid.UUID(patient["id"]))
    ).all()
    assert len(hashes) == 10 and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)
    first = client.post(
        f"{API}/auth/2fa/verify",
        json={"mfa_token": _login_step(client, patient["email"]), "code": codes[3].lower()},
    )
    assert first.status_code == 200
    second = client.post(
        f"{API}/auth/2fa/verify",
        json={"mfa_token": _login_step(client, patient["email"]), "code": codes[3]},
    )
    assert second.status_code == 401


def test_turning_it_off_needs_the_password_and_a_code(client):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    secret, _codes = _turn_on(client, headers)
    url = f"{API}/auth/2fa"
    no_password = client.delete(
        url, json={"password": "wrong password", "code": _next_code(secret)}, headers=headers
    )
    assert no_password.status_code == 422 and "password" in no_password.get_json()["errors"]
    no_code = client.delete(url, json={"password": PASSWORD, "code": "000000"}, headers=headers)
    assert no_code.status_code == 422 and "code" in no_code.get_json()["errors"]
    off = client.delete(
        url, json={"password": PASSWORD, "code": _next_code(secret)}, headers=headers
    )
    assert off.status_code == 204
    assert (
        "access_token"
        in client.post(LOGIN, json={"email": patient["email"], "password": PASSWORD}).get_json()
    )
    assert (
        client.delete(
            url, json={"password": PASSWORD, "code": "000000"}, headers=headers
        ).status_code
        == 409
    )


def _variant(app: Flask, settings: Settings, **changes) -> Iterator[Flask]:
    variant = create_app(settings.with_overrides(**changes))
    variant.test_client_class = ContractClient
    services = variant.extensions["moodtrack"]
    original = services.session_factory
    services.session_factory = app.extensions["moodtrack"].session_factory
    try:
        yield variant
    finally:
        services.session_factory = original
        services.engine.dispose()


@pytest.fixture
def strict(app: Flask, settings: Settings) -> Iterator[Flask]:
    """The app with MOODTRACK_REQUIRE_STAFF_2FA on, writing in this test's transaction."""
    yield from _variant(app, settings, require_staff_2fa=True)


def test_staff_who_must_use_it_can_only_enrol_until_they_confirm(app, strict):
    client = strict.test_client()
    doctor = make_staff(app)
    tokens = client.post(LOGIN, json={"email": doctor["email"], "password": PASSWORD}).get_json()
    assert tokens["second_factor_enrolment_required"] is True
    headers = bearer(tokens)
    for method, url in (
        ("GET", f"{API}/me"),
        ("GET", f"{API}/patients"),
        ("POST", f"{API}/invites"),
    ):
        refused = client.open(url, method=method, headers=headers)
        assert refused.status_code == 403
        assert (
            refused.get_json()["type"] == "urn:moodtrack:problem:second-factor-enrolment-required"
        )
    _turn_on(client, headers)
    # The same session may now do everything its role allows.
    assert client.get(f"{API}/me", headers=headers).status_code == 200
    # Patients are not held to it.
    patient = register_patient(client)
    patient_tokens = client.post(
        LOGIN, json={"email": patient["email"], "password": PASSWORD}
    ).get_json()
    assert patient_tokens["second_factor_enrolment_required"] is False
    assert client.get(f"{API}/me", headers=bearer(patient_tokens)).status_code == 200
    # Logout stays open to an unenrolled operator.
    operator = make_staff(app, role=Role.admin)
    op_headers = auth(client, operator["email"])
    assert client.get(f"{API}/organisations", headers=op_headers).status_code == 403
    assert client.post(f"{API}/auth/logout", headers=op_headers).status_code == 204


def test_an_org_admin_resets_a_members_second_factor_and_ends_their_sessions(app, client):
    organisation = make_organisation(app)
    admin = make_staff(app, organisation_id=organisation, member_role=MemberRole.org_admin)
    member = make_staff(app, organisation_id=organisation)
    admin_headers = auth(client, admin["email"])
    first = client.post(LOGIN, json={"email": member["email"], "password": PASSWORD}).get_json()
    _turn_on(client, bearer(first))
    listed = client.get(f"{API}/organisations/{organisation}/members", headers=admin_headers)
    assert {m["user_id"]: m["second_factor"] for m in listed.get_json()["items"]}[member["id"]]
    outsider = make_staff(
        app, organisation_id=make_organisation(app), member_role=MemberRole.org_admin
    )
    url = f"{API}/organisations/{organisation}/members/{member['id']}/2fa"
    assert client.delete(url, headers=auth(client, outsider["email"])).status_code == 404
    assert client.delete(url, headers=admin_headers).status_code == 204
    # Every session of the member is over: access and refresh tokens alike.
    assert client.get(f"{API}/me", headers=bearer(first)).status_code == 401
    refreshed = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 401
    # The password alone signs them in again; they enrol anew.
    again = client.post(LOGIN, json={"email": member["email"], "password": PASSWORD}).get_json()
    assert "access_token" in again
    operator = auth(client, make_staff(app, role=Role.admin)["email"])
    events = client.get(
        f"{API}/audit-events?action=second_factor_reset&actor_id={admin['id']}", headers=operator
    ).get_json()["items"]
    assert len(events) == 1 and events[0]["outcome"] == "success"


@pytest.fixture
def limited(app: Flask, settings: Settings) -> Iterator[Flask]:
    limits = RateLimits(second_factor_per_user="3/hour", login_per_address="1000/hour")
    yield from _variant(app, settings, rate_limits=limits)


def test_guessing_codes_is_limited_per_account(app, client, limited):
    lc = limited.test_client()
    patient = register_patient(client)
    secret, _codes = _turn_on(client, auth(client, patient["email"]))
    for _ in range(3):
        step = _login_step(lc, patient["email"])
        guess = lc.post(f"{API}/auth/2fa/verify", json={"mfa_token": step, "code": "000000"})
        assert guess.status_code == 401
    # From another address too, and even with the right code: the account's limit is spent.
    step = _login_step(lc, patient["email"])
    limited_out = lc.post(
        f"{API}/auth/2fa/verify",
        json={"mfa_token": step, "code": _next_code(secret)},
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    assert limited_out.status_code == 429
    # Another account is not affected.
    other = register_patient(client, email=unique_email())
    other_secret, _ = _turn_on(client, auth(client, other["email"]))
    ok = lc.post(
        f"{API}/auth/2fa/verify",
        json={"mfa_token": _login_step(lc, other["email"]), "code": _next_code(other_secret)},
    )
    assert ok.status_code == 200
