"""Schemathesis over the app in-process, against the contract openapi.yaml.

    .venv/bin/python -m fuzz.schemathesis_run [--max-examples 100] [--seed N] [--actors ...]

For each actor (a patient, then the patient's clinician; ``--actors admin`` adds an admin) a
fresh database is migrated and seeded through the API with real records: two care links, a
month of mood entries, self-report and clinician-rated assessments (one with a positive safety
item, so an open alert), a completed clinic session with observations, a scheduled one.
Schemathesis then runs every operation of openapi.yaml in-process over WSGI, authenticated as
that actor, in the phases examples, coverage, fuzzing (``--max-examples`` per operation) and
stateful, with a fixed seed. Checks: no 5xx (not_a_server_error); status code, content type and
body as the contract documents them; an operation that succeeds with the actor's token refuses
the same request without it or with an invalid one (ignored_auth); a request the contract
calls valid is accepted (positive_data_acceptance: 2xx, or a status POSITIVE_REJECTIONS allows
for that operation, with its reason). Path ids are fixed to the
seeded records (deletes get spare ones), so generated queries and bodies reach real data
instead of stopping at a 404.

A last sweep, outside schemathesis, sends every secured operation with no credentials and with
six kinds of invalid ones (garbage, another key, expired, a refresh token, ``alg: none``, Basic)
and requires a 401 problem+json each time.

Prints a table per actor and exits 1 on any failure, or when an operation that takes input got
fewer than ``--max-examples`` requests. Not a pytest module (pytest does not collect fuzz/): CI
runs it as a script, ``.venv/bin/python -m fuzz.schemathesis_run``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from api import create_app
from api.cli import alembic_config
from api.config import Settings
from api.db import make_engine
from api.mail import MemoryMailer
from models.accounts import Role, create_user
from models.organisations import MemberRole, add_member, organisation_for_cli
from models.passwords import Argon2Params, Passwords

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
PASSWORD = "correct horse battery staple"
KEYS = {
    "k2": b"k2-fuzz-signing-key-0123456789abcdef",
    "k1": b"k1-fuzz-older-key-0123456789abcdefgh",
}
# Cheap hashing: logins are part of the run (the token is fetched again after a logout).
CHEAP_ARGON2 = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "positive_data_acceptance",
)
# positive_data_acceptance: a request that the contract says is well formed must be accepted.
# Everywhere that means 2xx and nothing else; what an operation may answer to valid input
# instead is allowed below, for that operation only, with the reason. (Schemathesis's own
# default, 401, 403, 404, 409, 429 and 5xx everywhere, would hide a valid request refused for
# no reason.) The same table serves both actors: 403 is allowed where one of them lacks the role.
ACCEPTED = ("2xx",)
ROLE = "403: the actor's role may not call it, whatever the input (patient vs clinician vs admin)"
ORG_ADMIN = "403: organisation admins (or the operator) only; the fuzzed clinician is a member"
OPERATOR = "403: the operator (admin) only"
GONE = "404: the record was deleted by an earlier case (deletes get one spare record)"
STALE = "412: If-Match is any non-blank string; only the current ETag matches"
CURSOR = "422: `cursor` is any string; only a next_cursor this API issued is valid"
RANGE = "422: generated `from` after `to`, or a span longer than allowed"
REPLAY = "409: the generated id or Idempotency-Key was used by an earlier case with another body"
NOT_MINE = "422: a generated password, code or organisation is not the account's"
CREDENTIALS = "401: generated credentials, tokens or codes are not the account's"
TEXT = "422: text the schema cannot rule out: not storable (NUL, lone surrogates) or no email"
Rejections = dict[int, str]
_LIST: Rejections = {422: CURSOR}
_ROLE: Rejections = {403: ROLE}
_ROLE_LIST: Rejections = {403: ROLE, 422: CURSOR}
POSITIVE_REJECTIONS: dict[str, Rejections] = {
    "GET /api/v1/alerts": _ROLE_LIST,
    "GET /api/v1/alerts/{alert_id}": _ROLE,
    "POST /api/v1/alerts/{alert_id}/acknowledge": {
        **_ROLE,
        409: "409: acknowledged by an earlier case",
    },
    "GET /api/v1/audit-events": {403: OPERATOR, 422: CURSOR},
    "DELETE /api/v1/auth/2fa": {409: "409: the account has no second factor"},
    "POST /api/v1/auth/2fa/confirm": {409: "409: no enrolment is pending"},
    "POST /api/v1/auth/2fa/enrol": {422: NOT_MINE},
    "POST /api/v1/auth/2fa/verify": {401: CREDENTIALS},
    "POST /api/v1/auth/login": {
        401: CREDENTIALS,
        422: TEXT,
        429: "429: the lockout after repeated wrong passwords for one address",
    },
    "POST /api/v1/auth/refresh": {401: CREDENTIALS},
    "POST /api/v1/auth/register": {422: TEXT},
    "POST /api/v1/auth/register/confirm": {422: NOT_MINE},
    "POST /api/v1/auth/staff-invites/accept": {422: NOT_MINE},
    "GET /api/v1/care-links": _LIST,
    "POST /api/v1/care-links": {**_ROLE, 422: NOT_MINE},
    "DELETE /api/v1/care-links/{link_id}": {404: GONE},
    "GET /api/v1/delivery-health": {403: OPERATOR},
    "POST /api/v1/invites": {**_ROLE, 422: NOT_MINE},
    "DELETE /api/v1/me": {**_ROLE, 422: NOT_MINE},
    "PATCH /api/v1/me": {412: STALE},
    "GET /api/v1/me/export": _ROLE,
    "GET /api/v1/me/export.fhir.json": _ROLE,
    "POST /api/v1/me/password": {422: NOT_MINE},
    "GET /api/v1/organisations": {403: OPERATOR, 422: CURSOR},
    "POST /api/v1/organisations": {403: OPERATOR},
    "GET /api/v1/organisations/{organisation_id}": {403: ORG_ADMIN},
    "PATCH /api/v1/organisations/{organisation_id}": {403: ORG_ADMIN, 412: STALE},
    "GET /api/v1/organisations/{organisation_id}/emergency-accesses": {403: ORG_ADMIN},
    "POST /api/v1/organisations/{organisation_id}/emergency-accesses/{access_id}/review": {
        403: ORG_ADMIN
    },
    "GET /api/v1/organisations/{organisation_id}/members": {403: ORG_ADMIN},
    "DELETE /api/v1/organisations/{organisation_id}/members/{user_id}": {403: ORG_ADMIN},
    "PATCH /api/v1/organisations/{organisation_id}/members/{user_id}": {403: ORG_ADMIN},
    "DELETE /api/v1/organisations/{organisation_id}/members/{user_id}/2fa": {403: ORG_ADMIN},
    "POST /api/v1/organisations/{organisation_id}/staff-invites": {403: ORG_ADMIN},
    "GET /api/v1/patients": _ROLE_LIST,
    "GET /api/v1/patients/{patient_id}/access-log": _ROLE_LIST,
    "GET /api/v1/patients/{patient_id}/alerts": _ROLE_LIST,
    "GET /api/v1/patients/{patient_id}/assessments": {
        422: CURSOR + "; `instrument` is any string (its parameter lists no codes yet)"
    },
    "POST /api/v1/patients/{patient_id}/assessments": {
        **_ROLE,  # self-report forms: the patient; clinician-rated ones: the clinician
        409: REPLAY,
        422: "422: the answers must fit the instrument (count, each item's range)",
    },
    "DELETE /api/v1/patients/{patient_id}/assessments/{assessment_id}": {
        **_ROLE,  # the spare is a self-report form: the clinician may not delete it
        404: GONE,
        412: STALE,
    },
    "GET /api/v1/patients/{patient_id}/chart.svg": {422: RANGE},
    "GET /api/v1/patients/{patient_id}/due": _ROLE,
    "POST /api/v1/patients/{patient_id}/emergency-access": {
        **_ROLE,
        404: "404: a generated organisation_id is not one of the caller's organisations",
        409: "409: the clinician already sees the patient (a care link)",
        422: "422: a generated organisation_id where the patient is not cared for",
    },
    "GET /api/v1/patients/{patient_id}/mood-entries": _LIST,
    "GET /api/v1/patients/{patient_id}/mood-entries/changes": {
        422: "422: `since` is any string; only 0 or a next_cursor this API issued is valid"
    },
    "POST /api/v1/patients/{patient_id}/mood-entries": {
        **_ROLE,
        409: REPLAY,
        422: "422: occurred_at more than a year back or ahead of now; session rules",
    },
    "POST /api/v1/patients/{patient_id}/mood-entries/batch": _ROLE,
    "DELETE /api/v1/patients/{patient_id}/mood-entries/{entry_id}": {
        **_ROLE,
        404: GONE,
        412: STALE,
    },
    "PATCH /api/v1/patients/{patient_id}/mood-entries/{entry_id}": {
        **_ROLE,
        412: STALE,
        422: "422: the merged entry breaks a create rule (e.g. phase without a session)",
    },
    "GET /api/v1/patients/{patient_id}/report": {422: RANGE},
    "GET /api/v1/patients/{patient_id}/report.csv": {422: RANGE},
    "GET /api/v1/patients/{patient_id}/report.fhir.json": {422: RANGE},
    "GET /api/v1/patients/{patient_id}/report.html": {422: RANGE},
    "GET /api/v1/patients/{patient_id}/sessions": _LIST,
    "POST /api/v1/patients/{patient_id}/sessions": {
        403: "403: patients record home sessions only",
        409: REPLAY,
        422: "422: rules across fields (dates in order, esketamine doses, completed sessions)",
    },
    "DELETE /api/v1/patients/{patient_id}/sessions/{session_id}": {
        403: "403: the spare is a clinic session: patients change home sessions only",
        404: GONE,
        412: STALE,
    },
    "PATCH /api/v1/patients/{patient_id}/sessions/{session_id}": {
        403: "403: the seeded session is a clinic one: patients change home sessions only",
        412: STALE,
        422: "422: the merged session breaks a create rule, or status leaves a final state",
    },
    "POST /api/v1/patients/{patient_id}/sessions/{session_id}/observations": {
        **_ROLE,
        409: REPLAY,
        422: "422: at least one reading (JSON Schema could say it only with an anyOf)",
    },
    "GET /api/v1/patients/{patient_id}/trends": {422: RANGE},
    "POST /api/v1/users": {403: OPERATOR},
    "GET /api/v1/users/{user_id}": {403: OPERATOR},
    "PATCH /api/v1/users/{user_id}": {403: OPERATOR},
    "GET /api/v1/webhooks": {403: OPERATOR},
    "POST /api/v1/webhooks": {403: OPERATOR},
    "DELETE /api/v1/webhooks/{webhook_id}": {403: OPERATOR},
    "GET /api/v1/webhooks/{webhook_id}": {403: OPERATOR},
    "PATCH /api/v1/webhooks/{webhook_id}": {403: OPERATOR},
    "GET /api/v1/webhooks/{webhook_id}/deliveries": {403: OPERATOR},
    "POST /api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": {403: OPERATOR},
    "POST /api/v1/webhooks/{webhook_id}/rotate-secret": {403: OPERATOR},
}
PHASES = ("examples", "coverage", "fuzzing", "stateful")
DEFAULT_SEED = 20261127
METHODS = ("get", "put", "post", "patch", "delete")


@dataclass
class World:
    """The seeded records an actor's run starts from."""

    app: Flask
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # actor -> id, email
    ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


# ---------------------------------------------------------------------------- the database


def fresh_database(url: str | None, workdir: Path) -> str:
    """A migrated, empty database: a SQLite file in ``workdir`` unless ``url`` is given (wiped)."""
    from alembic import command

    url = url or f"sqlite:///{workdir / 'fuzz.db'}"
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
    engine = make_engine(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    return url


def build_app(url: str, workdir: Path) -> Flask:
    app = create_app(
        Settings(
            env="development",
            database_url=url,
            signing_keys=dict(KEYS),
            active_kid="k2",
            argon2=CHEAP_ARGON2,
            instance_path=workdir / "instance",
            # Long enough that no token expires during a run.
            access_ttl=timedelta(hours=3),
            log_level="WARNING",
        )
    )
    # Sign-up codes kept in memory, for seeding (and for the fuzzer's own sign-ups).
    app.extensions["moodtrack"].mailer = MemoryMailer()
    return app


# ---------------------------------------------------------------------------- seeding


def _ok(response: Any, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(
            f"seeding failed: {response.status_code} {response.get_data(as_text=True)}"
        )
    return response.get_json() or {}


def _login(client: FlaskClient, email: str) -> dict[str, str]:
    tokens = _ok(
        client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}), 200
    )
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _staff(
    app: Flask, role: Role, email: str, member_role: MemberRole = MemberRole.clinician
) -> dict[str, str]:
    """A staff account in the fuzz clinic (``Role.admin``: the operator, in none)."""
    with app.extensions["moodtrack"].session_factory() as session:
        user = create_user(
            db=session,
            passwords=Passwords(CHEAP_ARGON2),
            email=email,
            password=PASSWORD,
            role=role,
            display_name=f"Dr {role.value}",
            timezone="Europe/Berlin",
        )
        organisation = None
        if role == Role.clinician:
            organisation = organisation_for_cli(db=session, name="Fuzz clinic")
            add_member(db=session, user=user, organisation_id=organisation.id, role=member_role)
        session.commit()
        return {
            "id": str(user.id),
            "email": email,
            "organisation_id": str(organisation.id) if organisation else "",
        }


def _register(client: FlaskClient, email: str, zone: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "display_name": "Pat", "timezone": zone}
    _ok(client.post("/api/v1/auth/register", json=body), 202)
    code = client.application.extensions["moodtrack"].mailer.code_for(email)
    confirm = {"email": email, "code": code, "password": PASSWORD}
    profile = _ok(client.post("/api/v1/auth/register/confirm", json=confirm), 201)
    return {"id": profile["id"], "email": email}


def seed(app: Flask) -> World:
    """Two linked patients with a month of records, their clinician and an admin."""
    world = World(app=app)
    client = app.test_client()
    now = datetime.now(UTC).replace(microsecond=0)
    chicago = datetime.strptime("-06:00", "%z").tzinfo

    def at(days: float, hours: float = 0) -> str:
        return (now - timedelta(days=days, hours=hours)).astimezone(chicago).isoformat()

    patient = world.users["patient"] = _register(client, "pat@example.org", "America/Chicago")
    other = world.users["other_patient"] = _register(client, "sam@example.org", "Europe/Paris")
    clinician = world.users["clinician"] = _staff(app, Role.clinician, "dr@example.org")
    world.users["admin"] = _staff(app, Role.admin, "admin@example.org")
    ph, oh = _login(client, patient["email"]), _login(client, other["email"])
    ch = _login(client, clinician["email"])
    for headers in (ph, oh):
        code = _ok(client.post("/api/v1/invites", headers=ch), 201)["code"]
        link = _ok(client.post("/api/v1/care-links", json={"code": code}, headers=headers), 201)
        world.ids["link"].append(link["id"])

    base = f"/api/v1/patients/{patient['id']}"
    for day in range(30, 0, -1):
        body = {
            "occurred_at": at(day, hours=-9),
            "mood": 2 + (30 - day) // 5,
            "anxiety": 7 - (30 - day) // 6,
            "energy": 3 + day % 4,
            "sleep_hours": 5.5 + (day % 5) / 2,
            "note": f"day {day}: slept badly" if day % 3 else None,
        }
        entry = _ok(client.post(f"{base}/mood-entries", json=body, headers=ph), 201)
        world.ids["entry"].append(entry["id"])
    for days, answers in ((28, [2, 2, 3, 2, 2, 2, 2, 1, 1]), (14, [1, 1, 2, 1, 1, 1, 1, 0, 0])):
        body = {"instrument": "phq9", "answers": answers, "occurred_at": at(days), "difficulty": 2}
        form = _ok(client.post(f"{base}/assessments", json=body, headers=ph), 201)
        world.ids["assessment"].append(form["id"])
    madrs = {
        "instrument": "madrs",
        "answers": [3, 3, 2, 4, 2, 2, 3, 2, 2, 1],
        "occurred_at": at(12),
    }
    form = _ok(client.post(f"{base}/assessments", json=madrs, headers=ch), 201)
    world.ids["assessment"].append(form["id"])

    start = now - timedelta(days=10)
    session = _ok(
        client.post(
            f"{base}/sessions",
            json={
                "status": "completed",
                "started_at": start.isoformat(),
                "ended_at": (start + timedelta(minutes=40)).isoformat(),
                "discharged_at": (start + timedelta(hours=2)).isoformat(),
                "drug": "ketamine",
                "route": "iv",
                "dose_mg": 35,
                "weight_kg": 70,
                "setting": "clinic",
                "concomitant_medications": ["sertraline 100 mg"],
                "adverse_events": ["nausea"],
                "notes": "Tolerated well.",
            },
            headers=ch,
        ),
        201,
    )
    world.ids["session"].append(session["id"])
    for minutes in (-10, 40, 115):
        reading = {
            "observed_at": (start + timedelta(minutes=minutes)).isoformat(),
            "systolic": 128,
            "diastolic": 82,
            "heart_rate": 74,
            "spo2": 98,
            "sedation_moaas": 5 if minutes < 0 else 4,
            "cadss_total": 4,
        }
        _ok(
            client.post(f"{base}/sessions/{session['id']}/observations", json=reading, headers=ch),
            201,
        )
    for phase, minutes in (("pre", -30), ("post", 150)):
        body = {
            "occurred_at": (start + timedelta(minutes=minutes)).isoformat(),
            "mood": 3 if phase == "pre" else 6,
            "session_id": session["id"],
            "phase": phase,
        }
        entry = _ok(client.post(f"{base}/mood-entries", json=body, headers=ph), 201)
        world.ids["entry"].append(entry["id"])
    scheduled = _ok(
        client.post(
            f"{base}/sessions",
            json={
                "status": "scheduled",
                "started_at": (now + timedelta(days=2)).isoformat(),
                "drug": "esketamine",
                "route": "intranasal",
                "dose_mg": 56,
                "setting": "clinic",
            },
            headers=ch,
        ),
        201,
    )
    world.ids["session"].append(scheduled["id"])
    # A positive safety item last: an open self-harm alert for the clinician's inbox.
    crisis = {"instrument": "phq9", "answers": [1, 1, 1, 1, 0, 1, 0, 0, 1], "occurred_at": at(1)}
    form = _ok(client.post(f"{base}/assessments", json=crisis, headers=ph), 201)
    world.ids["assessment"].append(form["id"])
    alerts = _ok(client.get("/api/v1/alerts?status=all", headers=ch), 200)["items"]
    world.ids["alert"].extend(a["id"] for a in alerts)
    if not world.ids["alert"]:
        raise RuntimeError("seeding failed: no alert was raised")
    # Records for the generated deletes to consume.
    spare = {"occurred_at": at(0, hours=2), "mood": 4}
    world.ids["spare_entry"].append(
        _ok(client.post(f"{base}/mood-entries", json=spare, headers=ph), 201)["id"]
    )
    spare = {"instrument": "gad7", "answers": [1, 1, 1, 1, 1, 1, 1], "occurred_at": at(0, 3)}
    world.ids["spare_assessment"].append(
        _ok(client.post(f"{base}/assessments", json=spare, headers=ph), 201)["id"]
    )
    spare = {
        "status": "cancelled",
        "started_at": (now - timedelta(days=5)).isoformat(),
        "drug": "ketamine",
        "route": "iv",
        "dose_mg": 35,
        "weight_kg": 70,
        "setting": "clinic",
    }
    world.ids["spare_session"].append(
        _ok(client.post(f"{base}/sessions", json=spare, headers=ch), 201)["id"]
    )
    # An emergency access to review: a second clinician of the clinic opens the patient's record.
    covering = _staff(app, Role.clinician, "cover@example.org")
    opened = client.post(
        f"{base}/emergency-access",
        json={"reason": "Covering the on-call rota tonight."},
        headers=_login(client, covering["email"]),
    )
    world.ids["access"].append(_ok(opened, 201)["id"])
    # The other patient has a little data too, so the cohort has two rows.
    other_base = f"/api/v1/patients/{other['id']}"
    for day in (3, 2, 1):
        body = {"occurred_at": at(day), "mood": 5}
        _ok(client.post(f"{other_base}/mood-entries", json=body, headers=oh), 201)
    return world


# ---------------------------------------------------------------------------- schemathesis


def schemathesis_config(world: World, actor: str, args: argparse.Namespace) -> Any:
    from schemathesis.config import SchemathesisConfig

    # Path ids are fixed to seeded records (in every phase: schemathesis's dictionaries reach only
    # the fuzzing phase), so generated queries and bodies get past the 404 to the real checks.
    # Deletes get records of their own, so the other operations keep theirs.
    patient_id = world.users["patient"]["id"]
    ids = world.ids
    parameters = {
        "path.patient_id": patient_id,
        "path.user_id": world.users[actor]["id"],
        "path.entry_id": ids["entry"][0],
        "path.session_id": ids["session"][0],
        "path.assessment_id": ids["assessment"][0],
        "path.alert_id": ids["alert"][0],
        "path.link_id": ids["link"][0],
        "path.code": "phq9",
        "path.organisation_id": world.users["clinician"]["organisation_id"],
        "path.access_id": ids["access"][0],
    }
    spare_link = ids["link"][0] if actor == "patient" else ids["link"][1]
    operations = [
        {
            "include-method": "DELETE",
            "parameters": {
                "path.entry_id": ids["spare_entry"][0],
                "path.session_id": ids["spare_session"][0],
                "path.assessment_id": ids["spare_assessment"][0],
                "path.link_id": spare_link,
            },
        }
    ]
    checks: dict[str, Any] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in (*CHECKS, *args.extra_checks)})
    checks["positive_data_acceptance"]["expected-statuses"] = list(ACCEPTED)
    for label, rejections in POSITIVE_REJECTIONS.items():
        # By name ("METHOD /path"): include-method with include-path would match either.
        expected = [*ACCEPTED, *map(str, sorted(rejections))]
        operations.append(
            {
                "include-name": label,
                "checks": {"positive_data_acceptance": {"expected-statuses": expected}},
            }
        )
    phases: dict[str, Any] = {name: {"enabled": name in args.phases} for name in PHASES}
    phases["examples"]["fill-missing"] = True
    phases["stateful"]["max-steps"] = args.stateful_steps
    return SchemathesisConfig.from_dict(
        {
            "seed": args.seed,
            "color": False,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "workers": 1,
            # Every operation runs all its cases, failing or not: the counts stay comparable.
            "continue-on-failure": True,
            "generation": {
                "mode": "all",
                "max-examples": args.max_examples,
                "database": "none",
            },
            "phases": phases,
            "checks": checks,
            "parameters": parameters,
            "operations": operations,
        }
    )


@dataclass
class Outcome:
    actor: str
    seconds: float = 0.0
    cases: Counter[str] = field(default_factory=Counter)
    successes: Counter[str] = field(default_factory=Counter)
    fuzzed: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    phase_cases: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    # Statuses that answered schema-valid input outside the allowed ones, by operation.
    rejected: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""


_SOCKET_ONLY = ("max_redirects", "verify", "cert", "proxies")


def _patch_wsgi_probe() -> None:
    """Schemathesis 4.x hands ignored_auth's probe requests its socket-level settings, which
    werkzeug's test client refuses (TypeError: unexpected keyword 'max_redirects'); they mean
    nothing in-process, so drop them before the WSGI transport sees them."""
    from schemathesis.transport.wsgi import WSGITransport

    if getattr(WSGITransport.send, "_moodtrack_patched", False):
        return
    original = WSGITransport.send

    def send(self: Any, case: Any, *, session: Any = None, **kwargs: Any) -> Any:
        for name in _SOCKET_ONLY:
            kwargs.pop(name, None)
        return original(self, case, session=session, **kwargs)

    send._moodtrack_patched = True  # type: ignore[attr-defined]
    WSGITransport.send = send  # type: ignore[method-assign]


def _session_token(app: Flask, user_id: str) -> str:
    """An access token of a new session of ``user_id``, opened as a login opens one.

    Not through POST /auth/login: the fuzzer's wrong-password logins may lock the account out
    (a 429 the lockout rules call for), which must not starve the rest of the run of tokens.
    """
    from models.accounts import User, start_session
    from models.base import utcnow

    services = app.extensions["moodtrack"]
    with services.session_factory() as db:
        user = db.get(User, uuid.UUID(user_id))
        if user is None:
            raise RuntimeError("the fuzzed actor's account is gone")
        family, _refresh = start_session(
            db=db, user=user, refresh_ttl=services.settings.refresh_ttl
        )
        db.commit()
        return services.tokens.issue(
            user_id=user.id, role=user.role.value, family_id=family.id, now=utcnow()
        )


def _install_auth(schema: Any, app: Flask, user_id: str) -> None:
    # A new session after any 401: a generated logout revokes the current token.
    @schema.auth(refresh_interval=3600, retry_on=[401])
    class ActorAuth:
        def get(self, case: Any, ctx: Any) -> str:
            return _session_token(app, user_id)

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"

    del ActorAuth


def run_schemathesis(world: World, actor: str, args: argparse.Namespace) -> Outcome:
    import schemathesis
    from schemathesis.engine import Status, events, from_schema

    _patch_wsgi_probe()
    outcome = Outcome(actor=actor)
    schema = schemathesis.openapi.from_path(SPEC, config=schemathesis_config(world, actor, args))
    schema.app = world.app  # WSGI, in-process
    _install_auth(schema, world.app, world.users[actor]["id"])
    if args.operations:
        schema = schema.include(path_regex=args.operations)
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                # Attributed by the case's own operation: stateful scenarios and auth probes
                # send requests of other operations than the scenario's label.
                node = recorder.cases.get(case_id)
                label = node.value.operation.label if node is not None else recorder.label
                outcome.cases[label] += 1
                outcome.phase_cases[str(event.phase.value)] += 1
                if event.phase.value == "fuzzing":
                    outcome.fuzzed[label] += 1
                if interaction.response is not None:
                    status = interaction.response.status_code
                    outcome.statuses[label][status] += 1
                    # Not the coverage phase's OPTIONS and other methods the path lacks.
                    same_method = interaction.request.method == label.split(" ", 1)[0]
                    if 200 <= status < 300 and same_method:
                        outcome.successes[label] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (failure.operation or recorder.label, check.name, failure.title)
                    if check.name == "positive_data_acceptance":
                        status = getattr(failure, "status_code", 0)
                        outcome.rejected[failure.operation or recorder.label][status] += 1
                    if key not in outcome.failures:
                        outcome.failures[key] = [
                            failure.message.strip(),
                            check.failure_info.code_sample.strip(),
                        ]
        elif isinstance(event, events.NonFatalError):
            outcome.errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            outcome.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            outcome.stop_reason = str(event.stop_reason.value)
    outcome.seconds = time.monotonic() - started
    return outcome


# ---------------------------------------------------------------------------- auth sweep


def _bad_tokens(world: World) -> dict[str, str]:
    """Invalid credentials of several kinds, built from a real token of the patient."""
    client = world.app.test_client()
    body = {"email": world.users["patient"]["email"], "password": PASSWORD}
    tokens = _ok(client.post("/api/v1/auth/login", json=body), 200)
    access = tokens["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    header = jwt.get_unverified_header(access)
    expired = {**claims, "iat": claims["iat"] - 7200, "nbf": claims["nbf"] - 7200}
    expired["exp"] = claims["iat"] - 3600
    return {
        "garbage": "not-a-token",
        "other key": jwt.encode(claims, b"x" * 40, algorithm=header["alg"], headers={"kid": "k2"}),
        "expired": jwt.encode(expired, KEYS["k2"], algorithm=header["alg"], headers={"kid": "k2"}),
        "refresh token": tokens["refresh_token"],
        "alg none": jwt.encode(claims, None, algorithm="none"),
    }


def auth_sweep(world: World) -> tuple[int, list[str]]:
    """Every secured operation, without and with invalid credentials: 401 problem+json only."""
    spec = yaml.safe_load(SPEC.read_text())
    default_security = spec.get("security", [])
    fill = {
        "patient_id": world.users["patient"]["id"],
        "user_id": world.users["patient"]["id"],
        "entry_id": world.ids["entry"][0],
        "session_id": world.ids["session"][0],
        "assessment_id": world.ids["assessment"][0],
        "alert_id": world.ids["alert"][0],
        "link_id": world.ids["link"][0],
        "code": "phq9",
        "organisation_id": world.users["clinician"]["organisation_id"],
        "access_id": world.ids["access"][0],
    }
    credentials: dict[str, dict[str, str]] = {"none": {}}
    for kind, token in _bad_tokens(world).items():
        credentials[kind] = {"Authorization": f"Bearer {token}"}
    credentials["basic scheme"] = {"Authorization": "Basic cGF0QGV4YW1wbGUub3JnOng="}
    client = world.app.test_client()
    problems: list[str] = []
    sent = 0
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None or not operation.get("security", default_security):
                continue
            # Ids the world has no record for (e.g. a webhook): any id, the token fails first.
            url = path.format_map(defaultdict(lambda: str(uuid.uuid4()), fill))
            for kind, headers in credentials.items():
                sent += 1
                response = client.open(
                    url,
                    method=method.upper(),
                    headers={**headers, "If-Match": "*"},
                    json={} if method in ("post", "patch", "put") else None,
                )
                content_type = response.headers.get("Content-Type", "")
                if response.status_code != 401 or content_type != "application/problem+json":
                    problems.append(
                        f"{method.upper()} {path} with {kind} credentials: "
                        f"{response.status_code} {content_type}"
                    )
    return sent, problems


# ---------------------------------------------------------------------------- report


def report(
    outcome: Outcome, operations: list[str], without_inputs: set[str], min_cases: int
) -> list[str]:
    """Print one actor's results; returns the reasons it failed.

    An operation without parameters or body has one possible request: it is exempt from the
    minimum count (schemathesis stops when the input space is exhausted)."""
    print(f"\n== {outcome.actor}: {sum(outcome.cases.values())} cases in {outcome.seconds:.0f} s")
    print("   by phase: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.phase_cases.items())))
    print(f"   {'operation':<66} {'cases':>6} {'fuzz':>5} {'2xx':>5}  statuses")
    reasons: list[str] = []
    for label in operations:
        cases = outcome.cases.get(label, 0)
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(outcome.statuses[label].items()))
        fuzzed, ok = outcome.fuzzed.get(label, 0), outcome.successes.get(label, 0)
        print(f"   {label:<66} {cases:>6} {fuzzed:>5} {ok:>5}  {statuses}")
        if cases < min_cases and label not in without_inputs:
            reasons.append(f"{outcome.actor}: {label} ran only {cases} cases (< {min_cases})")
    for (operation, check, title), (message, sample) in sorted(outcome.failures.items()):
        print(
            f"\n   FAIL [{check}] {operation}: {title}\n      {message}".replace("\n", "\n      ")
        )
        print(f"      reproduce: {sample}".replace("\n", "\n      "))
        if check == "positive_data_acceptance":
            counts = sorted(outcome.rejected[operation].items())
            print("      valid input answered: " + " ".join(f"{s}:{n}" for s, n in counts))
        reasons.append(f"{outcome.actor}: {operation}: {check}")
    for error in outcome.errors:
        print(f"\n   ERROR {error}".replace("\n", "\n      "))
        reasons.append(f"{outcome.actor}: error")
    if outcome.stop_reason != "completed":
        reasons.append(f"{outcome.actor}: run stopped: {outcome.stop_reason}")
    return reasons


def spec_operations() -> tuple[list[str], set[str]]:
    """Every documented operation, and those of them that take no input at all."""
    spec = yaml.safe_load(SPEC.read_text())
    operations, without_inputs = [], set()
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            label = f"{method.upper()} {path}"
            operations.append(label)
            operation = item[method]
            if not (item.get("parameters") or operation.get("parameters")) and not operation.get(
                "requestBody"
            ):
                without_inputs.add(label)
    return operations, without_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100, help="fuzzing cases per operation")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--actors",
        nargs="+",
        default=["patient", "clinician"],
        choices=["patient", "clinician", "admin"],
    )
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--stateful-steps", type=int, default=10)
    parser.add_argument(
        "--extra-checks",
        nargs="*",
        default=[],
        help="more schemathesis checks (e.g. negative_data_rejection), for exploring",
    )
    parser.add_argument(
        "--operations",
        help="only paths matching this regex (debugging; coverage still runs them all)",
    )
    parser.add_argument(
        "--min-cases",
        type=int,
        default=None,
        help="fail when an operation runs fewer cases (default: --max-examples)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FUZZ_DATABASE_URL"),
        help="PostgreSQL URL to use (wiped); default a temporary SQLite file",
    )
    args = parser.parse_args(argv)
    min_cases = args.max_examples if args.min_cases is None else args.min_cases
    operations, without_inputs = spec_operations()
    if args.operations:
        import re

        operations = [op for op in operations if re.search(args.operations, op.split(" ", 1)[1])]
    started = time.monotonic()
    reasons: list[str] = []
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        workdir = Path(tmp)
        for actor in args.actors:
            url = fresh_database(args.database_url, workdir)
            app = build_app(url, workdir)
            try:
                world = seed(app)
                outcome = run_schemathesis(world, actor, args)
                reasons += report(outcome, operations, without_inputs, min_cases)
            finally:
                app.extensions["moodtrack"].engine.dispose()
        url = fresh_database(args.database_url, workdir)
        app = build_app(url, workdir)
        with contextlib.ExitStack() as stack:
            stack.callback(app.extensions["moodtrack"].engine.dispose)
            sent, problems = auth_sweep(seed(app))
        print(
            f"\n== credentials sweep: {sent} requests, every secured operation with no, garbage, "
            "foreign-key, expired, refresh, alg-none and Basic credentials: all must be 401"
        )
        for problem in problems:
            print(f"   FAIL {problem}")
        reasons += [f"credentials: {p}" for p in problems]
    elapsed = time.monotonic() - started
    print(f"\n== {len(reasons)} problems; {elapsed:.0f} s in all (seed {args.seed})")
    for reason in reasons:
        print(f"   {reason}")
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
