"""Sign-up and login tell an outsider nothing about who has an account, and an attacker at one
address cannot keep the owner out at another; guessing is still slowed per account and per
address. Each case of issue 12 section 4 fails on the code before it (409 vs 201 at sign-up;
429 vs 401 after ten failures; the owner locked out from everywhere)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from models.signups import MAX_ATTEMPTS
from models.throttle import LoginThrottle, purge_stale
from tests.conftest import PASSWORD, login, register_patient, signup_code, unique_email
from tests.mailsink import body_of, code_in

REGISTER = "/api/v1/auth/register"
CONFIRM = "/api/v1/auth/register/confirm"
LOGIN = "/api/v1/auth/login"
WRONG = "not the password at all"


def _problem(response: Any) -> dict[str, Any]:
    body = response.get_json()
    body.pop("instance", None)
    return body


def _headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in ("X-Request-ID",)}


@pytest.fixture
def work(app: Flask) -> Iterator[dict[str, int]]:
    """Counts the SQL statements run and the passwords hashed, per request."""
    counts = {"statements": 0, "hashes": 0}
    services = app.extensions["moodtrack"]
    passwords = services.passwords
    original_hash = passwords.hash

    def counting_hash(password: str) -> str:
        counts["hashes"] += 1
        return original_hash(password)

    def count(*_args: Any) -> None:
        counts["statements"] += 1

    passwords.hash = counting_hash  # type: ignore[method-assign]
    event.listen(services.engine, "before_cursor_execute", count)
    try:
        yield counts
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
        del passwords.hash


def _sign_up(client: Any, email: str, work: dict[str, int]) -> tuple[Any, dict[str, int]]:
    work.update(statements=0, hashes=0)
    response = client.post(
        REGISTER,
        json={"email": email, "password": PASSWORD, "display_name": "Pat", "timezone": "UTC"},
    )
    return response, dict(work)


def test_sign_up_answers_alike_for_new_and_existing_emails(client, mail, work):
    existing = register_patient(client)["email"]
    new = unique_email("new")
    taken, taken_work = _sign_up(client, existing.upper(), work)
    fresh, fresh_work = _sign_up(client, new, work)
    assert taken.status_code == fresh.status_code == 202
    assert taken.get_json() == fresh.get_json()
    assert _headers(taken) == _headers(fresh)
    # The same work: one argon2 hash each, the same statements (timing within noise).
    assert taken_work == fresh_work and taken_work["hashes"] == 1
    # Only the mailbox learns which: a code for the new address, a note for the account.
    assert code_in(mail.wait_for(new)) is not None
    note = mail.wait_for(existing, after=1)
    assert code_in(note) is None and "already has an account" in body_of(note)


def test_a_refused_password_is_refused_alike_for_new_and_existing_emails(client):
    existing = register_patient(client)["email"]
    answers = [
        client.post(
            REGISTER,
            json={"email": email, "password": "short", "display_name": "P", "timezone": "UTC"},
        )
        for email in (existing, unique_email("new"))
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert _problem(answers[0]) == _problem(answers[1])


def test_a_sign_up_with_someone_elses_address_cannot_be_finished(client, mail):
    victim = unique_email("victim")
    # Someone signs up with the victim's address and a password of their choosing.
    client.post(
        REGISTER,
        json={
            "email": victim,
            "password": "the attacker's choice 1",
            "display_name": "X",
            "timezone": "UTC",
        },
    )
    code = signup_code(victim)
    # Without the mailbox they cannot guess the code; five wrong codes void the sign-up.
    for _ in range(MAX_ATTEMPTS):
        wrong = client.post(
            CONFIRM, json={"email": victim, "code": "AAAA-AAAA", "password": PASSWORD}
        )
        assert wrong.status_code == 422 and "code" in wrong.get_json()["errors"]
    voided = client.post(
        CONFIRM, json={"email": victim, "code": code, "password": "the attacker's choice 1"}
    )
    assert voided.status_code == 422
    # The owner signs up again; a code with a password other than theirs does not finish it.
    client.post(
        REGISTER,
        json={"email": victim, "password": PASSWORD, "display_name": "V", "timezone": "UTC"},
    )
    code = signup_code(victim, after=1)
    other = client.post(CONFIRM, json={"email": victim, "code": code, "password": WRONG})
    assert other.status_code == 422 and "password" in other.get_json()["errors"]
    assert (
        client.post(CONFIRM, json={"email": victim, "code": code, "password": PASSWORD}).status_code
        == 201
    )
    # Spent.
    again = client.post(CONFIRM, json={"email": victim, "code": code, "password": PASSWORD})
    assert again.status_code == 422


def test_confirming_for_an_existing_account_looks_like_any_wrong_code(client):
    existing = register_patient(client)["email"]
    client.post(
        REGISTER,
        json={"email": existing, "password": PASSWORD, "display_name": "P", "timezone": "UTC"},
    )
    answers = [
        client.post(CONFIRM, json={"email": email, "code": "ABCD-EFGH", "password": PASSWORD})
        for email in (existing, unique_email("nobody"))
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert _problem(answers[0]) == _problem(answers[1])


def _login(client: Any, email: str, password: str, address: str) -> Any:
    return client.post(
        LOGIN, json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def test_unknown_and_existing_emails_answer_alike_after_ten_failures(client):
    existing = register_patient(client)["email"]
    unknown = unique_email("nobody")
    for email in (existing, unknown):
        for _ in range(10):
            assert _login(client, email, WRONG, "203.0.113.5").status_code == 401
    locked = [_login(client, email, WRONG, "203.0.113.5") for email in (existing, unknown)]
    assert [r.status_code for r in locked] == [429, 429]
    assert _problem(locked[0]) == _problem(locked[1])
    assert locked[0].headers["Retry-After"] == locked[1].headers["Retry-After"]


def test_an_attacker_at_one_address_does_not_keep_the_owner_out(client):
    owner = register_patient(client)["email"]
    for _ in range(12):
        _login(client, owner, WRONG, "203.0.113.66")
    # The attacker's address waits, even with the right password...
    assert _login(client, owner, PASSWORD, "203.0.113.66").status_code == 429
    # ...while the owner, at home, signs in.
    assert _login(client, owner, PASSWORD, "198.51.100.7").status_code == 200


def test_guessing_from_many_addresses_is_slowed_for_each_and_the_owner_still_gets_in(client):
    owner = register_patient(client)["email"]
    # 20 failures within the hour from ten addresses: the account is under attack.
    for i in range(10):
        for _ in range(2):
            assert _login(client, owner, WRONG, f"203.0.113.{i}").status_code == 401
    # A further address now gets three tries, not ten, before its own wait starts.
    for _ in range(3):
        assert _login(client, owner, WRONG, "192.0.2.200").status_code == 401
    assert _login(client, owner, WRONG, "192.0.2.200").status_code == 429
    # The same holds for an email with no account: nothing to tell them apart.
    nobody = unique_email("nobody")
    for i in range(10):
        for _ in range(2):
            _login(client, nobody, WRONG, f"203.0.113.{i}")
    for _ in range(3):
        assert _login(client, nobody, WRONG, "192.0.2.200").status_code == 401
    assert _login(client, nobody, WRONG, "192.0.2.200").status_code == 429
    # The owner, from an address that has not failed, is let in by the right password.
    assert _login(client, owner, PASSWORD, "198.51.100.7").status_code == 200
    assert login(client, owner)["access_token"]


def test_stale_login_counts_are_purged_but_running_waits_are_kept(db):
    now = datetime.now(UTC)
    old = now - timedelta(days=2)
    db.add_all(
        [
            LoginThrottle(key="a" * 64, failures=3, last_failure_at=old),
            LoginThrottle(
                key="b" * 64,
                failures=30,
                last_failure_at=old,
                locked_until=now + timedelta(hours=1),
            ),
            LoginThrottle(key="c" * 64, failures=1, last_failure_at=now),
        ]
    )
    db.flush()
    assert purge_stale(db=db, now=now) == 1
    assert {
        row.key[0]
        for row in db.query(LoginThrottle).filter(
            LoginThrottle.key.in_(["a" * 64, "b" * 64, "c" * 64])
        )
    } == {"b", "c"}
