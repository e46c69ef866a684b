"""Every way an access or refresh token must be refused, and the session lifecycle."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

import api.tokens
from api.db import make_engine
from api.tokens import TokenRejected
from models.accounts import PURGE_BATCH, RevokedAccessToken
from tests.conftest import PASSWORD, TEST_KEYS, auth, bearer, login, make_staff, register_patient

ME = "/api/v1/me"


def _claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "moodtrack",
        "aud": "moodtrack-api",
        "sub": user_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "sid": str(uuid.uuid4()),
        "role": "patient",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def patient(client):
    patient = register_patient(client)
    patient["tokens"] = login(client, patient["email"])
    # The session id of a real login, so forged tokens fail only for the reason under test.
    patient["sid"] = jwt.decode(
        patient["tokens"]["access_token"], options={"verify_signature": False}
    )["sid"]
    return patient


def _forge(patient, *, key=TEST_KEYS["k2"], kid="k2", algorithm="HS256", **overrides):
    overrides.setdefault("sid", patient["sid"])
    claims = _claims(patient["id"], **overrides)
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _assert_401(response):
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["status"] == 401 and body["title"] and body["detail"]


def test_a_well_forged_token_with_the_real_key_is_accepted(client, patient):
    # The control for every rejection below: only the one thing under test differs.
    assert client.get(ME, headers=bearer(_forge(patient))).status_code == 200


def test_token_from_the_retired_key_is_accepted_while_in_the_ring(client, patient):
    assert (
        client.get(ME, headers=bearer(_forge(patient, key=TEST_KEYS["k1"], kid="k1"))).status_code
        == 200
    )


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case_is_refused(client, patient, alg):
    header = {"alg": alg, "typ": "JWT", "kid": "k2"}
    claims = _claims(patient["id"], sid=patient["sid"])

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64(header)}.{b64(claims)}."
    _assert_401(client.get(ME, headers=bearer(token)))


def test_hs_rs_confusion_is_refused(client, patient):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = jwt.encode(
        _claims(patient["id"], sid=patient["sid"]),
        private,
        algorithm="RS256",
        headers={"kid": "k2"},
    )
    _assert_401(client.get(ME, headers=bearer(rs_token)))
    # The classic attack: HS256 keyed with a public key the attacker knows.
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = jwt.api_jws.PyJWS().encode(
        json.dumps(_claims(patient["id"], sid=patient["sid"])).encode(),
        public_pem[:64],
        algorithm="HS256",
        headers={"kid": "k2"},
    )
    _assert_401(client.get(ME, headers=bearer(confused)))


@pytest.mark.parametrize(
    "case",
    [
        {"key": b"x" * 40},  # bad signature
        {"exp": -10},  # expired (seconds from when the test runs, see below)
        {"nbf": 600},  # not yet valid
        {"iat": 600},  # issued in the future
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"kid": "unknown"},
        {"typ": "refresh"},
        {"sub": "not-a-uuid"},
        {"sub": str(uuid.uuid4())},  # no such user
        {"sid": str(uuid.uuid4())},  # no such session
    ],
    ids=[
        "signature",
        "expired",
        "nbf",
        "iat",
        "aud",
        "iss",
        "kid",
        "typ",
        "sub",
        "user",
        "session",
    ],
)
def test_tampered_claims_are_refused(client, patient, case):
    kwargs = dict(case)
    # Instants are offsets from now, taken when the test runs, not when it is collected: on
    # a loaded machine a suite can reach this test more than ten minutes after collection.
    for claim in ("exp", "nbf", "iat"):
        if claim in kwargs:
            kwargs[claim] += int(time.time())
    key = kwargs.pop("key", TEST_KEYS["k2"])
    kid = kwargs.pop("kid", "k2")
    _assert_401(client.get(ME, headers=bearer(_forge(patient, key=key, kid=kid, **kwargs))))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "typ", "sid"])
def test_each_required_claim_missing_is_refused(client, patient, claim):
    claims = _claims(patient["id"], sid=patient["sid"])
    del claims[claim]
    token = jwt.encode(claims, TEST_KEYS["k2"], algorithm="HS256", headers={"kid": "k2"})
    _assert_401(client.get(ME, headers=bearer(token)))


def test_token_without_kid_is_refused(client, patient):
    token = jwt.encode(
        _claims(patient["id"], sid=patient["sid"]), TEST_KEYS["k2"], algorithm="HS256"
    )
    _assert_401(client.get(ME, headers=bearer(token)))


def test_retired_key_stops_verifying(app, client, patient):
    tokens = app.extensions["moodtrack"].tokens
    token = _forge(patient, key=TEST_KEYS["k1"], kid="k1")
    retired = tokens._keys.pop("k1")
    try:
        _assert_401(client.get(ME, headers=bearer(token)))
    finally:
        tokens._keys["k1"] = retired


def test_refresh_token_used_as_bearer_is_refused(client, patient):
    _assert_401(client.get(ME, headers=bearer(patient["tokens"]["refresh_token"])))


def test_token_in_query_string_is_refused_even_with_a_valid_header(client, patient):
    token = patient["tokens"]["access_token"]
    _assert_401(client.get(f"{ME}?access_token={token}", headers=bearer(token)))
    _assert_401(client.get(f"{ME}?access_token={token}"))


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Token abc", "Bearer not.a.jwt", "Bearer a.b"],
)
def test_missing_or_malformed_authorization(client, header):
    headers = {} if header is None else {"Authorization": header}
    _assert_401(client.get(ME, headers=headers))


def test_issued_token_has_the_promised_shape(client, patient):
    token = patient["tokens"]["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256" and header["kid"] == "k2"
    assert set(claims) >= {"iss", "aud", "sub", "iat", "exp", "jti", "typ"}
    assert isinstance(claims["sub"], str) and claims["sub"] == patient["id"]
    assert claims["exp"] - claims["iat"] <= 15 * 60
    assert patient["tokens"]["token_type"] == "Bearer"
    assert patient["tokens"]["expires_in"] == 15 * 60


def test_refresh_rotates_and_reuse_revokes_the_family(client, patient):
    first = patient["tokens"]
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get(ME, headers=bearer(second)).status_code == 200

    # The rotated token is presented again: theft assumed, the whole family dies.
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    _assert_401(reuse)
    _assert_401(
        client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    )
    _assert_401(client.get(ME, headers=bearer(second)))
    _assert_401(client.get(ME, headers=bearer(first)))


def test_unknown_refresh_token_is_refused(client):
    _assert_401(client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}))


def test_expired_refresh_token_is_refused(app, client, patient, db):
    from sqlalchemy import update

    from models.accounts import RefreshToken

    db.execute(update(RefreshToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()
    _assert_401(
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": patient["tokens"]["refresh_token"]}
        )
    )


def test_logout_revokes_access_and_refresh(client, patient):
    tokens = patient["tokens"]
    other = login(client, patient["email"])
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    _assert_401(client.get(ME, headers=bearer(tokens)))
    _assert_401(
        client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    )
    # Another device's session is untouched.
    assert client.get(ME, headers=bearer(other)).status_code == 200


def _deny_list(db, prefix: str) -> tuple[int, int]:
    """(expired, live) rows of the revoked-access-token table whose jti starts with prefix."""
    db.expire_all()
    now = datetime.now(UTC)
    rows = db.scalars(
        select(RevokedAccessToken).where(RevokedAccessToken.jti.startswith(prefix))
    ).all()
    return sum(r.expires_at < now for r in rows), sum(r.expires_at >= now for r in rows)


def _revoked(db, prefix: str, *, expired: int, live: int) -> None:
    now = datetime.now(UTC)
    db.add_all(
        RevokedAccessToken(jti=f"{prefix}{i}", expires_at=now - timedelta(minutes=1 + i))
        for i in range(expired)
    )
    db.add_all(
        RevokedAccessToken(jti=f"{prefix}live{i}", expires_at=now + timedelta(minutes=10))
        for i in range(live)
    )
    db.commit()


def test_logout_purges_expired_revocations_a_bounded_batch_at_a_time(client, db, patient):
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    _revoked(db, prefix, expired=PURGE_BATCH + 5, live=3)
    assert _deny_list(db, prefix) == (PURGE_BATCH + 5, 3)
    assert client.post("/api/v1/auth/logout", headers=bearer(patient["tokens"])).status_code == 204
    # One batch went; tokens that have not expired yet stay refused.
    assert _deny_list(db, prefix) == (5, 3)
    second = login(client, patient["email"])
    assert client.post("/api/v1/auth/logout", headers=bearer(second)).status_code == 204
    assert _deny_list(db, prefix) == (0, 3)
    _assert_401(client.get(ME, headers=bearer(second)))  # the new revocation holds


def test_cli_purges_expired_revocations(tmp_path):
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'purge.db'}"
    env = {**os.environ, "MOODTRACK_INSTANCE_PATH": str(tmp_path), "DATABASE_URL": url}
    command = [sys.executable, "-m", "api.cli", "db"]
    assert subprocess.run([*command, "upgrade"], env=env, timeout=120).returncode == 0
    engine = make_engine(url)
    try:
        with sessionmaker(bind=engine)() as db:
            _revoked(db, "cli-", expired=PURGE_BATCH * 3, live=2)
        done = subprocess.run(
            [*command, "purge"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert f"{PURGE_BATCH * 3} expired" in done.stdout
        with sessionmaker(bind=engine)() as db:
            assert _deny_list(db, "cli-") == (0, 2)
    finally:
        engine.dispose()


def test_password_change_revokes_every_other_session(client, patient):
    this, other = patient["tokens"], login(client, patient["email"])
    new_password = "a brand new passphrase 2026"
    response = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(this),
    )
    assert response.status_code == 204
    assert client.get(ME, headers=bearer(this)).status_code == 200
    _assert_401(client.get(ME, headers=bearer(other)))
    _assert_401(client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}))
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": patient["email"], "password": PASSWORD}
        ).status_code
        == 401
    )
    assert login(client, patient["email"], new_password)["access_token"]


def test_password_change_checks_current_and_policy(client, patient):
    headers = bearer(patient["tokens"])
    wrong = client.post(
        "/api/v1/me/password",
        json={"current_password": "not my password!", "new_password": "x" * 20},
        headers=headers,
    )
    assert wrong.status_code == 422 and "current_password" in wrong.get_json()["errors"]
    weak = client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert weak.status_code == 422 and "new_password" in weak.get_json()["errors"]


def test_disabled_user_tokens_fail_on_next_request(app, client, patient):
    admin = make_staff(app, role=__import__("models").Role.admin)
    admin_headers = auth(client, admin["email"])
    user_url = f"/api/v1/users/{patient['id']}"
    etag = client.get(user_url, headers=admin_headers).headers["ETag"]
    response = client.patch(
        user_url, json={"disabled": True}, headers={**admin_headers, "If-Match": etag}
    )
    assert response.status_code == 200 and response.get_json()["disabled"] is True
    _assert_401(client.get(ME, headers=bearer(patient["tokens"])))
    _assert_401(
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": patient["tokens"]["refresh_token"]}
        )
    )
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": patient["email"], "password": PASSWORD}
        ).status_code
        == 401
    )


def test_a_remembered_token_is_checked_again_for_expiry_and_key(app, monkeypatch, patient):
    tokens = app.extensions["moodtrack"].tokens
    token = patient["tokens"]["access_token"]
    first = tokens.verify(token)
    assert tokens.verify(token) is first  # remembered: no second signature check

    real_time = time.time

    class AnHourLater(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(hours=1)

    # Both clocks an hour on: this process's memory and PyJWT's own check.
    monkeypatch.setattr(api.tokens, "time", SimpleNamespace(time=lambda: real_time() + 3600))
    monkeypatch.setattr(jwt.api_jwt, "datetime", AnHourLater)
    with pytest.raises(TokenRejected):
        tokens.verify(token)
    monkeypatch.undo()

    tokens.verify(token)
    retired = tokens._keys.pop("k2")
    try:
        with pytest.raises(TokenRejected):
            tokens.verify(token)
    finally:
        tokens._keys["k2"] = retired
