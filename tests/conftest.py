"""Shared fixtures: one app per session on a migrated database; each test in a rolled-back
transaction; every response checked against openapi.yaml."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, text
from sqlalchemy.orm import sessionmaker

from api import create_app
from api.cli import alembic_config
from api.config import Settings
from api.db import make_engine, make_session_factory
from models.accounts import Role, User, create_user
from models.organisations import MemberRole, Organisation, add_member, create_organisation
from models.passwords import Argon2Params, Passwords
from tests.mailsink import MailSink, code_in

ROOT = Path(__file__).resolve().parent.parent
TEST_KEYS = {
    "k2": b"k2-test-signing-key-0123456789abcdef",
    "k1": b"k1-old-signing-key-0123456789abcdef",
}
# Cheap hashing keeps the suite fast; production cost is RFC 9106's default.
TEST_ARGON2 = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery staple"


def _database_url(tmp: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp / 'test.db'}"


def _reset_database(url: str) -> None:
    """Drop everything, then build the schema the way production does: by migrations."""
    from alembic import command

    engine = make_engine(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    command.upgrade(alembic_config(url), "head")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = _database_url(Path(tmp))
        _reset_database(url)
        yield url


MAIL: MailSink | None = None


@pytest.fixture(scope="session")
def mail() -> Iterator[MailSink]:
    """The SMTP server every app of the suite sends through (sign-up codes)."""
    global MAIL
    sink = MailSink().start()
    MAIL = sink
    try:
        yield sink
    finally:
        MAIL = None
        sink.stop()


@pytest.fixture(scope="session")
def settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, mail: MailSink
) -> Settings:
    return Settings(
        smtp_url=mail.url,
        env="development",
        database_url=database_url,
        signing_keys=dict(TEST_KEYS),
        active_kid="k2",
        argon2=TEST_ARGON2,
        instance_path=tmp_path_factory.mktemp("instance"),
        testing=True,
        log_level="INFO",
    )


class ContractClient(FlaskClient):
    """A test client that validates every response, and every request answered with success,
    against openapi.yaml."""

    validator: Any = None

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        if self.validator is not None:
            self.validator(response)
        return response


def _openapi_validator() -> Any:
    from openapi_core import Config, OpenAPI
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
    from openapi_core.deserializing.media_types.util import json_loads, plain_loads
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound

    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    # openapi-core knows application/json only; problem+json and FHIR's fhir+json are JSON too.
    # It reads text/html and text/plain as text, and must read CSV and SVG so too: the
    # contract types them as strings, which a generated client returns as the text they are.
    config = Config(
        extra_media_type_deserializers={
            "application/problem+json": json_loads,
            "application/fhir+json": json_loads,
            "text/csv": plain_loads,
            "image/svg+xml": plain_loads,
        }
    )
    openapi = OpenAPI.from_dict(spec, config=config)

    def validate(response: Any) -> None:
        request = response.request
        # The app has read the body already; let the validator read it again.
        stream = request.environ.get("wsgi.input")
        if stream is not None and stream.seekable():
            stream.seek(0)
        try:
            openapi.validate_response(
                WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
            )
            if 200 <= response.status_code < 300 and not _items_refused(response):
                # What the service accepted, the contract must allow: a request it answers
                # with success validates against openapi.yaml too (tests send invalid ones
                # on purpose, and those must be refused, never accepted).
                if stream is not None and stream.seekable():
                    stream.seek(0)
                openapi.validate_request(WerkzeugOpenAPIRequest(request))
        except (PathNotFound, OperationNotFound):
            # Undocumented paths and methods answer 404/405; tests check those bodies.
            assert response.status_code in (404, 405), (request.method, request.path)

    return validate


def _items_refused(response: Any) -> bool:
    """A mood-entry batch answered 200 that refused some items (422 each): those items did
    not match MoodEntryIn, so the request as a whole need not match the contract."""
    if not response.request.path.endswith("/mood-entries/batch"):
        return False
    return bool((response.get_json(silent=True) or {}).get("failed"))


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    application.test_client_class = ContractClient
    ContractClient.validator = staticmethod(_openapi_validator())
    yield application
    application.extensions["moodtrack"].engine.dispose()


@pytest.fixture(autouse=True)
def _transaction(app: Flask) -> Iterator[None]:
    """Run each test inside one outer transaction that is rolled back at the end."""
    services = app.extensions["moodtrack"]
    original = services.session_factory
    connection = services.engine.connect()
    outer = connection.begin()
    services.session_factory = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield
    finally:
        services.session_factory = original
        outer.rollback()
        connection.close()


@pytest.fixture
def committing(app: Flask) -> Iterator[list[str]]:
    """Requests in this test commit for real: the rollback wrapper of ``_transaction`` is
    lifted, so the paths a savepoint hides run (SQLite's BEGIN IMMEDIATE, the audited read's
    own transaction, concurrent commits). Append the email of every account the test makes:
    they are deleted afterwards, with everything that cascades from them."""
    services = app.extensions["moodtrack"]
    wrapped = services.session_factory
    services.session_factory = make_session_factory(services.engine)
    created_emails: list[str] = []
    try:
        yield created_emails
    finally:
        with services.session_factory() as session:
            session.execute(delete(User).where(User.email.in_(created_emails)))
            session.commit()
        services.session_factory = wrapped


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Any:
    with app.extensions["moodtrack"].session_factory() as session:
        yield session


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.org"


def signup_code(email: str, *, after: int = 0) -> str:
    """The code of the sign-up email to ``email`` (the (after+1)-th message to it)."""
    assert MAIL is not None, "the mail fixture is not running"
    code = code_in(MAIL.wait_for(email, after=after))
    assert code is not None, "the message to this address carries no code"
    return code


def register_patient(
    client: FlaskClient,
    *,
    email: str | None = None,
    timezone: str = "America/Chicago",
    display_name: str = "Pat",
    password: str = PASSWORD,
) -> dict[str, Any]:
    """Sign a patient up through the API (register, the emailed code, confirm); returns the
    profile plus ``password``."""
    email = email or unique_email("patient")
    assert MAIL is not None
    before = MAIL.count(email)
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": email,
            "password": password,
            "display_name": display_name,
            "timezone": timezone,
        },
    )
    assert response.status_code == 202, response.get_json()
    code = signup_code(email, after=before)
    confirmed = client.post(
        "/api/v1/auth/register/confirm",
        json={"email": email, "code": code, "password": password},
    )
    assert confirmed.status_code == 201, confirmed.get_json()
    return {**confirmed.get_json(), "password": password}


TEST_CLINIC = "Test clinic"


def make_organisation(app: Flask, name: str | None = None) -> str:
    """A new organisation (its id); named uniquely unless a name is given."""
    with app.extensions["moodtrack"].session_factory() as session:
        organisation = create_organisation(db=session, name=name or unique_email("clinic"))
        session.commit()
        return str(organisation.id)


def _test_clinic(session: Any) -> uuid.UUID:
    from sqlalchemy import select

    found = session.scalars(select(Organisation.id).where(Organisation.name == TEST_CLINIC)).first()
    return found or create_organisation(db=session, name=TEST_CLINIC).id


def make_staff(
    app: Flask,
    *,
    role: Role = Role.clinician,
    email: str | None = None,
    organisation_id: str | None = None,
    member_role: MemberRole = MemberRole.clinician,
) -> dict[str, Any]:
    """Create a staff account (a member of ``organisation_id``, else of the shared test clinic)
    or an operator (``Role.admin``, no organisation), as the CLI does."""
    email = email or unique_email(role.value)
    with app.extensions["moodtrack"].session_factory() as session:
        user = create_user(
            db=session,
            passwords=Passwords(TEST_ARGON2),
            email=email,
            password=PASSWORD,
            role=role,
            display_name=f"Dr {role.value}",
            timezone="UTC",
        )
        org = None
        if role == Role.clinician:
            org = uuid.UUID(organisation_id) if organisation_id else _test_clinic(session)
            add_member(db=session, user=user, organisation_id=org, role=member_role)
        session.commit()
        return {
            "id": str(user.id),
            "email": email,
            "password": PASSWORD,
            "organisation_id": str(org) if org else None,
        }


def join(app: Flask, user_id: str, organisation_id: str, role: MemberRole) -> None:
    """Make an existing staff account a member of another organisation."""
    with app.extensions["moodtrack"].session_factory() as session:
        user = session.get(User, uuid.UUID(user_id))
        add_member(db=session, user=user, organisation_id=uuid.UUID(organisation_id), role=role)
        session.commit()


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log in; returns the token pair."""
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


def auth(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in and return the Authorization header."""
    return bearer(login(client, email, password))


def link(
    client: FlaskClient, clinician_headers: dict[str, str], patient_headers: dict[str, str]
) -> str:
    """Link a patient to a clinician through an invite; returns the link id."""
    code = client.post("/api/v1/invites", headers=clinician_headers).get_json()["code"]
    response = client.post("/api/v1/care-links", json={"code": code}, headers=patient_headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]
