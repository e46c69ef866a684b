"""The authorization matrix: route x method x actor -> status, one table, one test per cell.

Actors: the patient who owns the data, another patient, a clinician linked to the patient, an
unlinked clinician of the same organisation, a clinician and an org admin of another
organisation, an org admin of the patient's organisation, the operator (admin), and no one
(no token). The world is built once per module
through the API (the users, a care link, an open invite, a mood entry, a self-report and a
clinician-rated assessment, a completed clinic session with an observation, a home session,
the open self_harm alert of a PHQ-9 with item 9 = 1), and every cell runs in a savepoint of
its own that is rolled back afterwards: each starts from that same world, and destructive cells
(DELETE /me, ending the care link, logout, disabling a user) disturb none of the others.

A cell sends one request as one actor with the real ids in the path, a valid body and the
current ETag in If-Match, so its status says who may do what, not whether the body was valid.
The rules encoded (api/auth.py, api.md): no token -> 401; a role the operation is not for ->
403; a patient or record the caller may not see -> 404, the very problem an id that exists
nowhere gets; a patient seen but not the caller's to write (a linked clinician on self-recorded
data, a patient on clinic sessions) -> 403. No answer to an outsider mentions the patient.
A second test fails when the app registers a route and method the table does not cover.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from models.accounts import Role, User
from models.delivery import Delivery, Routing, fan_out
from models.organisations import MemberRole, Membership, Organisation
from tests.conftest import (
    PASSWORD,
    login,
    make_organisation,
    make_staff,
    register_patient,
    signup_code,
    unique_email,
)

ACTORS = (
    "patient",
    "other_patient",
    "linked",
    "unlinked",
    "other_clinician",
    "org_admin",
    "other_org_admin",
    "admin",
    "anonymous",
)
# Staff of the patient's organisation (A) and of another one (B), and the operator.
STAFF = {
    "linked": ("A", MemberRole.clinician),
    "unlinked": ("A", MemberRole.clinician),
    "org_admin": ("A", MemberRole.org_admin),
    "other_clinician": ("B", MemberRole.clinician),
    "other_org_admin": ("B", MemberRole.org_admin),
    "admin": ("", MemberRole.clinician),
}
# Those who may not see the patient (the admin reads the audit trail, which names them).
OUTSIDERS = (
    "other_patient",
    "unlinked",
    "other_clinician",
    "org_admin",
    "other_org_admin",
    "anonymous",
)
API = "/api/v1"
P = f"{API}/patients/<patient_id>"
NOW = datetime.now(UTC).replace(microsecond=0)
SESSION_START = NOW - timedelta(days=2)


def iso(instant: datetime) -> str:
    return instant.isoformat()


def cells(
    patient: int,
    other_patient: int,
    linked: int,
    unlinked: int,
    admin: int,
    anonymous: int,
    *,
    other_clinician: int | None = None,
    org_admin: int | None = None,
    other_org_admin: int | None = None,
) -> dict[str, int]:
    """Expected statuses, one per actor; the other organisation's clinician and both org
    admins answer as the unlinked clinician unless given (none of them sees the patient)."""
    return {
        "patient": patient,
        "other_patient": other_patient,
        "linked": linked,
        "unlinked": unlinked,
        "other_clinician": unlinked if other_clinician is None else other_clinician,
        "org_admin": unlinked if org_admin is None else org_admin,
        "other_org_admin": unlinked if other_org_admin is None else other_org_admin,
        "admin": admin,
        "anonymous": anonymous,
    }


# The recurring columns.
EVERYONE = cells(200, 200, 200, 200, 200, 200)
SIGNED_IN = cells(200, 200, 200, 200, 200, 401)
# The patient's data: the patient and a linked clinician read it; outsiders see nothing.
READ = cells(200, 404, 200, 404, 403, 401)
# Self-recorded data: only the patient writes; a linked clinician sees it but may not.
SELF_WRITE = cells(200, 404, 403, 404, 403, 401)
# Clinician-recorded data: only a linked clinician writes.
CLINICIAN_WRITE = cells(403, 404, 200, 404, 403, 401)
# Both the patient and a linked clinician write (home sessions).
SHARED_WRITE = cells(200, 404, 200, 404, 403, 401)
# Patient-only operations on the patient's own record (due list, access log).
PATIENT_SELF = cells(200, 404, 403, 403, 403, 401)
# Clinician-only operations on a linked patient (alerts).
LINKED_CLINICIAN = cells(403, 403, 200, 404, 403, 401)
# One's own account, any patient (their own /me).
ANY_PATIENT = cells(200, 200, 403, 403, 403, 401)
# Any staff account: their own (organisation-scoped) cohort and inbox.
ANY_STAFF = cells(403, 403, 200, 200, 403, 401)
# The operator's routes.
ADMIN_ONLY = cells(403, 403, 403, 403, 200, 401)
# Webhooks: the operator and the org admins (each of their own organisation's endpoints).
WEBHOOK_MANAGERS = cells(
    403, 403, 403, 403, 200, 401, other_clinician=403, org_admin=200, other_org_admin=200
)
WEBHOOK_OF_A = cells(
    403, 403, 403, 403, 200, 401, other_clinician=403, org_admin=200, other_org_admin=404
)
# An org admin's routes on their organisation (A): its other members 403, outsiders 404.
ORG_ADMIN = cells(
    403, 403, 403, 403, 403, 401, other_clinician=404, org_admin=200, other_org_admin=404
)


def success(expect: dict[str, int], status: int) -> dict[str, int]:
    """The same column with its 200s replaced by the operation's success status."""
    return {actor: status if code == 200 else code for actor, code in expect.items()}


@dataclass
class World:
    """Who is who, their tokens, and the patient's records."""

    headers: dict[str, dict[str, str]]
    tokens: dict[str, dict[str, Any]]
    emails: dict[str, str]
    ids: dict[str, str]
    etags: dict[str, str]
    app: Flask


Body = Callable[["World", str], Any]


@dataclass(frozen=True)
class Row:
    """One route and method, with the status every actor expects."""

    method: str
    rule: str
    expect: dict[str, int]
    variant: str = ""
    # Path placeholder → key of World.ids, where the default record is not the one meant.
    ids: dict[str, str] = field(default_factory=dict)
    body: Body | None = None
    # Key of World.etags for If-Match ("actor" for the caller's own profile).
    if_match: str | None = None
    query: str = ""
    # Outsiders whose success here rightly names the patient (an emergency access opened).
    reveals: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        label = f"{self.method} {self.rule}"
        return f"{label} [{self.variant}]" if self.variant else label


def mood_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    return {"occurred_at": iso(NOW - timedelta(hours=3)), "mood": 6, "anxiety": 3}


def phq9_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    return {
        "instrument": "phq9",
        "answers": [1] * 8 + [0],
        "occurred_at": iso(NOW - timedelta(hours=2)),
    }


def madrs_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    return {
        "instrument": "madrs",
        "answers": [2] * 10,
        "occurred_at": iso(NOW - timedelta(hours=2)),
    }


def clinic_session_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    return {
        "status": "completed",
        "started_at": iso(SESSION_START),
        "ended_at": iso(SESSION_START + timedelta(minutes=40)),
        "discharged_at": iso(SESSION_START + timedelta(hours=2)),
        "drug": "ketamine",
        "route": "iv",
        "dose_mg": 35,
        "weight_kg": 70,
        "setting": "clinic",
        "concomitant_medications": [],
        "adverse_events": [],
        "notes": "Tolerated well.",
    }


def home_session_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    start = NOW - timedelta(days=1)
    return {
        **clinic_session_body(),
        "started_at": iso(start),
        "ended_at": iso(start + timedelta(minutes=40)),
        "discharged_at": None,
        "route": "oral",
        "dose_mg": 150,
        "setting": "home",
    }


def observation_body(_w: World | None = None, _a: str = "") -> dict[str, Any]:
    return {"observed_at": iso(SESSION_START + timedelta(minutes=40)), "heart_rate": 80}


def own_email(world: World, actor: str) -> str:
    return world.emails["patient" if actor == "anonymous" else actor]


def own_refresh(world: World, actor: str) -> dict[str, Any]:
    token = world.tokens["patient" if actor == "anonymous" else actor]["refresh_token"]
    return {"refresh_token": token}


def second_step(world: World, _actor: str) -> dict[str, Any]:
    """A fresh login step of the two-factor patient and a code of the next time-step (the
    current one may already be spent: a code is accepted once)."""
    tokens = world.app.extensions["moodtrack"].tokens
    token = tokens.issue_mfa(user_id=uuid.UUID(world.ids["mfa_user_id"]), now=datetime.now(UTC))
    code = pyotp.TOTP(world.ids["mfa_secret"]).at(datetime.now(UTC) + timedelta(seconds=30))
    return {"mfa_token": token, "code": code}


def fixed(body: Any) -> Body:
    return lambda _w, _a: body


TABLE: tuple[Row, ...] = (
    # Outside /api/v1: open to all.
    Row("GET", "/healthz", EVERYONE),
    Row("GET", "/readyz", EVERYONE),
    Row("GET", "/openapi.yaml", EVERYONE),
    Row("GET", "/docs", EVERYONE),
    # Sign-up and tokens: anyone (a token, if sent, changes nothing).
    Row(
        "POST",
        f"{API}/auth/register/confirm",
        success(EVERYONE, 201),
        body=lambda w, _a: {
            "email": w.emails["pending"],
            "code": w.ids["signup_code"],
            "password": PASSWORD,
        },
    ),
    Row(
        "POST",
        f"{API}/auth/register",
        success(EVERYONE, 202),
        body=lambda _w, _a: {
            "email": unique_email("new"),
            "password": PASSWORD,
            "display_name": "New",
            "timezone": "Europe/Paris",
        },
    ),
    Row(
        "POST",
        f"{API}/auth/login",
        EVERYONE,
        body=lambda w, a: {"email": own_email(w, a), "password": PASSWORD},
    ),
    Row("POST", f"{API}/auth/refresh", EVERYONE, body=own_refresh),
    Row("POST", f"{API}/auth/logout", success(SIGNED_IN, 204)),
    # Two-factor sign-in: anyone signed in enrols (staff must, patients may); nobody in the
    # world has started one to confirm, nor turned it on to turn off (409 past the checks).
    Row("POST", f"{API}/auth/2fa/enrol", SIGNED_IN, body=fixed({"password": PASSWORD})),
    Row("POST", f"{API}/auth/2fa/confirm", success(SIGNED_IN, 409), body=fixed({"code": "123456"})),
    Row(
        "DELETE",
        f"{API}/auth/2fa",
        success(SIGNED_IN, 409),
        body=fixed({"password": PASSWORD, "code": "123456"}),
    ),
    # The second step of a login: its token and a code, whoever else calls.
    Row("POST", f"{API}/auth/2fa/verify", EVERYONE, body=second_step),
    # One's own account.
    Row("GET", f"{API}/me", SIGNED_IN),
    Row("PATCH", f"{API}/me", SIGNED_IN, body=fixed({"display_name": "Renamed"}), if_match="actor"),
    Row(
        "DELETE",
        f"{API}/me",
        success(ANY_PATIENT, 204),
        body=fixed({"password": PASSWORD}),
    ),
    Row(
        "POST",
        f"{API}/me/password",
        success(SIGNED_IN, 204),
        body=fixed({"current_password": PASSWORD, "new_password": "a brand new passphrase 42"}),
    ),
    Row("GET", f"{API}/me/export", ANY_PATIENT),
    Row("GET", f"{API}/me/export", ANY_PATIENT, variant="fhir", query="format=fhir"),
    Row("GET", f"{API}/me/export.fhir.json", ANY_PATIENT),
    # Staff accounts (admin).
    Row(
        "POST",
        f"{API}/users",
        success(ADMIN_ONLY, 201),
        body=lambda _w, _a: {
            "email": unique_email("staff"),
            "password": PASSWORD,
            "display_name": "Dr New",
            "role": "clinician",
        },
    ),
    Row("GET", f"{API}/users/<user_id>", ADMIN_ONLY),
    Row(
        "PATCH",
        f"{API}/users/<user_id>",
        ADMIN_ONLY,
        body=fixed({"disabled": True}),
        if_match="user",
    ),
    Row("GET", f"{API}/audit-events", ADMIN_ONLY),
    # Organisations: the operator's; their staff: their org admins'.
    Row(
        "POST",
        f"{API}/organisations",
        success(ADMIN_ONLY, 201),
        body=lambda _w, _a: {"name": "Clinic C", "first_admin": {"email": unique_email("oa")}},
    ),
    Row("GET", f"{API}/organisations", ADMIN_ONLY),
    Row("GET", f"{API}/organisations/<organisation_id>", ADMIN_ONLY),
    Row(
        "PATCH",
        f"{API}/organisations/<organisation_id>",
        ADMIN_ONLY,
        body=fixed({"name": "Renamed clinic"}),
        if_match="organisation",
    ),
    Row("GET", f"{API}/organisations/<organisation_id>/members", ORG_ADMIN),
    Row(
        "POST",
        f"{API}/organisations/<organisation_id>/staff-invites",
        success(ORG_ADMIN, 201),
        body=lambda _w, _a: {"email": unique_email("new-staff"), "role": "clinician"},
    ),
    Row(
        "PATCH",
        f"{API}/organisations/<organisation_id>/members/<user_id>",
        ORG_ADMIN,
        body=fixed({"role": "org_admin"}),
        if_match="member",
    ),
    Row(
        "DELETE",
        f"{API}/organisations/<organisation_id>/members/<user_id>",
        success(ORG_ADMIN, 204),
        if_match="member",
    ),
    Row(
        "DELETE",
        f"{API}/organisations/<organisation_id>/members/<user_id>/2fa",
        success(ORG_ADMIN, 204),
    ),
    # The emergency access to review is the unlinked clinician's, to the other patient.
    Row("GET", f"{API}/organisations/<organisation_id>/emergency-accesses", ORG_ADMIN),
    Row(
        "POST",
        f"{API}/organisations/<organisation_id>/emergency-accesses/<access_id>/review",
        ORG_ADMIN,
    ),
    # The code is the right to join; a token, if sent, changes nothing.
    Row(
        "POST",
        f"{API}/auth/staff-invites/accept",
        success(EVERYONE, 201),
        body=lambda w, _a: {
            "code": w.ids["staff_code"],
            "password": PASSWORD,
            "display_name": "Dr Newcomer",
        },
    ),
    # Care team.
    # An org admin is no one's clinician (403); the other organisation's clinician invites
    # into their own.
    Row(
        "POST",
        f"{API}/invites",
        cells(403, 403, 201, 201, 403, 401, org_admin=403, other_org_admin=403),
    ),
    # The open invite is the unlinked clinician's: either patient may take it.
    Row(
        "POST",
        f"{API}/care-links",
        success(ANY_PATIENT, 201),
        body=lambda w, _a: {"code": w.ids["code"]},
    ),
    Row("GET", f"{API}/care-links", cells(200, 200, 200, 200, 403, 401)),
    # Either party ends the link; anyone else finds no such link.
    Row("DELETE", f"{API}/care-links/<link_id>", success(READ, 204)),
    Row("GET", f"{API}/patients", ANY_STAFF),
    Row("GET", f"{P}", READ),
    # Mood entries: self-recorded.
    Row("POST", f"{P}/mood-entries", success(SELF_WRITE, 201), body=mood_body),
    Row("GET", f"{P}/mood-entries", READ),
    Row("GET", f"{P}/mood-entries/changes", READ, query="since=0"),
    Row(
        "POST",
        f"{P}/mood-entries/batch",
        SELF_WRITE,
        body=lambda w, a: {"entries": [mood_body(w, a)]},
    ),
    Row("GET", f"{P}/mood-entries/<uuid:entry_id>", READ),
    Row(
        "PATCH",
        f"{P}/mood-entries/<uuid:entry_id>",
        SELF_WRITE,
        body=fixed({"mood": 7}),
        if_match="entry_id",
    ),
    Row(
        "DELETE", f"{P}/mood-entries/<uuid:entry_id>", success(SELF_WRITE, 204), if_match="entry_id"
    ),
    # Assessments: self-report by the patient, clinician-rated by a linked clinician.
    Row(
        "POST",
        f"{P}/assessments",
        success(SELF_WRITE, 201),
        variant="self-report",
        body=phq9_body,
    ),
    Row(
        "POST",
        f"{P}/assessments",
        success(CLINICIAN_WRITE, 201),
        variant="clinician-rated",
        body=madrs_body,
    ),
    Row("GET", f"{P}/assessments", READ),
    Row("GET", f"{P}/assessments/<assessment_id>", READ, variant="self-report"),
    Row(
        "GET",
        f"{P}/assessments/<assessment_id>",
        READ,
        variant="clinician-rated",
        ids={"assessment_id": "rated_id"},
    ),
    Row(
        "DELETE",
        f"{P}/assessments/<assessment_id>",
        success(SELF_WRITE, 204),
        variant="self-report",
        if_match="assessment_id",
    ),
    Row(
        "DELETE",
        f"{P}/assessments/<assessment_id>",
        success(CLINICIAN_WRITE, 204),
        variant="clinician-rated",
        ids={"assessment_id": "rated_id"},
        if_match="rated_id",
    ),
    # Sessions: clinic ones by a linked clinician, home ones by the patient too.
    Row(
        "POST",
        f"{P}/sessions",
        success(CLINICIAN_WRITE, 201),
        variant="clinic",
        body=clinic_session_body,
    ),
    Row(
        "POST",
        f"{P}/sessions",
        success(SHARED_WRITE, 201),
        variant="home",
        body=home_session_body,
    ),
    Row("GET", f"{P}/sessions", READ),
    Row("GET", f"{P}/sessions/<session_id>", READ),
    Row(
        "PATCH",
        f"{P}/sessions/<session_id>",
        CLINICIAN_WRITE,
        variant="clinic",
        body=fixed({"notes": "Amended."}),
        if_match="session_id",
    ),
    Row(
        "PATCH",
        f"{P}/sessions/<session_id>",
        SHARED_WRITE,
        variant="home",
        ids={"session_id": "home_session_id"},
        body=fixed({"notes": "Felt calm."}),
        if_match="home_session_id",
    ),
    Row(
        "DELETE",
        f"{P}/sessions/<session_id>",
        success(CLINICIAN_WRITE, 204),
        variant="clinic",
        if_match="session_id",
    ),
    Row(
        "DELETE",
        f"{P}/sessions/<session_id>",
        success(SHARED_WRITE, 204),
        variant="home",
        ids={"session_id": "home_session_id"},
        if_match="home_session_id",
    ),
    # Observations: recorded by a linked clinician (a patient's role may not), read by both.
    Row(
        "POST",
        f"{P}/sessions/<session_id>/observations",
        success(LINKED_CLINICIAN, 201),
        body=observation_body,
    ),
    Row("GET", f"{P}/sessions/<session_id>/observations", READ),
    Row("GET", f"{P}/sessions/<session_id>/effect", READ),
    # Analytics and reports.
    Row("GET", f"{P}/trends", READ, query="metric=mood"),
    Row("GET", f"{P}/course", READ),
    Row("GET", f"{P}/report", READ),
    Row("GET", f"{P}/report", READ, variant="csv", query="format=csv"),
    Row("GET", f"{P}/report", READ, variant="fhir", query="format=fhir"),
    Row("GET", f"{P}/report", READ, variant="html", query="format=html"),
    Row("GET", f"{P}/report.csv", READ),
    Row("GET", f"{P}/report.fhir.json", READ),
    Row("GET", f"{P}/report.html", READ),
    Row("GET", f"{P}/chart.svg", READ, query="metric=mood"),
    # Emergency access: a clinician of the patient's organisation who is not linked; the linked
    # one sees the patient already (409); outside the organisation, as if there were no such
    # patient (404); an org admin is no one's clinician.
    Row(
        "POST",
        f"{P}/emergency-access",
        cells(
            403, 403, 409, 201, 403, 401, other_clinician=404, org_admin=404, other_org_admin=404
        ),
        body=fixed({"reason": "On call: patient phoned the clinic in distress."}),
        reveals=("unlinked",),
    ),
    Row("GET", f"{P}/due", PATIENT_SELF),
    Row("GET", f"{P}/access-log", PATIENT_SELF),
    # Alerts: the linked clinician's inbox.
    Row("GET", f"{API}/alerts", ANY_STAFF),
    Row("GET", f"{API}/alerts/<alert_id>", LINKED_CLINICIAN),
    Row("GET", f"{P}/alerts", LINKED_CLINICIAN),
    Row(
        "POST",
        f"{API}/alerts/<alert_id>/acknowledge",
        LINKED_CLINICIAN,
        body=fixed({"note": "Called the patient."}),
    ),
    # Delivery: webhooks of the operator and of each organisation's admins; delivery health.
    Row(
        "POST",
        f"{API}/webhooks",
        success(WEBHOOK_MANAGERS, 201),
        body=fixed({"url": "https://relay.example.org/hook", "event_types": ["alert.raised"]}),
    ),
    Row("GET", f"{API}/webhooks", WEBHOOK_MANAGERS),
    Row("GET", f"{API}/webhooks/<webhook_id>", WEBHOOK_OF_A),
    Row(
        "PATCH",
        f"{API}/webhooks/<webhook_id>",
        WEBHOOK_OF_A,
        body=fixed({"description": "pager relay"}),
        if_match="webhook_id",
    ),
    Row(
        "DELETE",
        f"{API}/webhooks/<webhook_id>",
        success(WEBHOOK_OF_A, 204),
        if_match="webhook_id",
    ),
    Row("POST", f"{API}/webhooks/<webhook_id>/rotate-secret", WEBHOOK_OF_A),
    Row("GET", f"{API}/webhooks/<webhook_id>/deliveries", WEBHOOK_OF_A),
    Row(
        "POST",
        f"{API}/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver",
        success(WEBHOOK_OF_A, 202),
    ),
    Row("GET", f"{API}/delivery-health", ADMIN_ONLY),
    # Reference data: any signed-in user.
    Row("GET", f"{API}/instruments", SIGNED_IN),
    Row("GET", f"{API}/outcome-definitions", SIGNED_IN),
    Row("GET", f"{API}/instruments/<code>", SIGNED_IN, ids={"code": "instrument"}),
)

# What the app registers that is not an operation of the contract.
NOT_OPERATIONS = {"static", "restx_doc.static", "root"}


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _created(response: Any, etags: dict[str, str], key: str) -> str:
    """The new record's id, its ETag noted under ``key``."""
    assert response.status_code == 201, (response.request.path, response.get_json())
    etags[key] = response.headers.get("ETag", "")
    return response.get_json()["id"]


def build_world(app: Flask) -> World:
    """Everyone and the patient's records, made through the API (no contract check here)."""
    client = FlaskClient(app, app.response_class, use_cookies=False)
    patient = register_patient(client)
    other = register_patient(client)
    emails = {"patient": patient["email"], "other_patient": other["email"]}
    ids = {"patient_id": patient["id"], "other_patient_id": other["id"], "instrument": "phq9"}
    organisations = {"A": make_organisation(app), "B": make_organisation(app)}
    ids["organisation_id"] = organisations["A"]
    for actor, (organisation, member_role) in STAFF.items():
        staff = make_staff(
            app,
            role=Role.admin if actor == "admin" else Role.clinician,
            organisation_id=organisations.get(organisation),
            member_role=member_role,
        )
        emails[actor] = staff["email"]
        ids[f"{actor}_id"] = staff["id"]
    tokens = {actor: login(client, email) for actor, email in emails.items()}
    headers = {actor: _bearer(pair) for actor, pair in tokens.items()} | {"anonymous": {}}
    ph, ch = headers["patient"], headers["linked"]
    etags: dict[str, str] = {}

    code = client.post(f"{API}/invites", headers=ch).get_json()["code"]
    link = client.post(f"{API}/care-links", json={"code": code}, headers=ph)
    ids["link_id"] = _created(link, etags, "link_id")
    # An open invite, of the clinician the patient is not linked to.
    ids["code"] = client.post(f"{API}/invites", headers=headers["unlinked"]).get_json()["code"]

    hook = {"url": "http://127.0.0.1:9/hook", "event_types": ["alert.raised"]}
    # Organisation A's endpoint, registered by its org admin.
    created_hook = client.post(f"{API}/webhooks", json=hook, headers=headers["org_admin"])
    ids["webhook_id"] = _created(created_hook, etags, "webhook_id")

    base = f"{API}/patients/{patient['id']}"
    entry = client.post(f"{base}/mood-entries", json=mood_body(), headers=ph)
    ids["entry_id"] = _created(entry, etags, "entry_id")
    # PHQ-9 with item 9 positive: a self_harm alert opens.
    phq9 = {"instrument": "phq9", "answers": [0] * 8 + [1], "occurred_at": iso(NOW)}
    assessment = client.post(f"{base}/assessments", json=phq9, headers=ph)
    ids["assessment_id"] = _created(assessment, etags, "assessment_id")
    rated = client.post(f"{base}/assessments", json=madrs_body(), headers=ch)
    ids["rated_id"] = _created(rated, etags, "rated_id")
    clinic = client.post(f"{base}/sessions", json=clinic_session_body(), headers=ch)
    ids["session_id"] = _created(clinic, etags, "session_id")
    observation = client.post(
        f"{base}/sessions/{ids['session_id']}/observations",
        json={
            "observed_at": iso(SESSION_START + timedelta(minutes=10)),
            "systolic": 128,
            "diastolic": 82,
            "heart_rate": 76,
            "spo2": 98,
            "sedation_moaas": 4,
        },
        headers=ch,
    )
    _created(observation, etags, "observation_id")
    home = client.post(f"{base}/sessions", json=home_session_body(), headers=ph)
    ids["home_session_id"] = _created(home, etags, "home_session_id")
    alerts = client.get(f"{base}/alerts", headers=ch).get_json()["items"]
    ids["alert_id"] = next(a["id"] for a in alerts if a["rule"] == "self_harm")
    with app.extensions["moodtrack"].session_factory() as db:
        fan_out(db=db, now=NOW, routing=Routing(email_enabled=False))
        # A dead letter: what an operator redelivers.
        db.execute(update(Delivery).values(status="failed"))
        db.commit()
    deliveries = client.get(
        f"{API}/webhooks/{ids['webhook_id']}/deliveries", headers=headers["org_admin"]
    ).get_json()["items"]
    ids["delivery_id"] = deliveries[0]["id"]

    # The other patient, linked to the linked clinician too, opened by the unlinked one in an
    # emergency (not the patient of the table: the unlinked clinician must not see them).
    code = client.post(f"{API}/invites", headers=ch).get_json()["code"]
    other_link = client.post(
        f"{API}/care-links", json={"code": code}, headers=headers["other_patient"]
    )
    assert other_link.status_code == 201
    opened = client.post(
        f"{API}/patients/{other['id']}/emergency-access",
        json={"reason": "Covering the weekend on-call rota."},
        headers=headers["unlinked"],
    )
    ids["access_id"] = _created(opened, etags, "access_id")

    # An open staff invite of organisation A, for someone without an account.
    invite = client.post(
        f"{API}/organisations/{organisations['A']}/staff-invites",
        json={"email": unique_email("invited"), "role": "clinician"},
        headers=headers["org_admin"],
    )
    assert invite.status_code == 201, invite.get_json()
    ids["staff_code"] = invite.get_json()["code"]

    # Accounts: the admin's and org admin's target is the unlinked clinician; each caller's
    # own profile.
    ids["user_id"] = ids["unlinked_id"]
    with app.extensions["moodtrack"].session_factory() as db:
        for actor in ACTORS[:-1]:
            user = db.get(User, uuid.UUID(ids[f"{actor}_id"]))
            assert user is not None
            etags[actor] = user.etag
        organisation = db.get(Organisation, uuid.UUID(organisations["A"]))
        membership = db.get(Membership, _membership_id(db, ids["unlinked_id"], organisations["A"]))
        assert organisation is not None and membership is not None
        etags["organisation"], etags["member"] = organisation.etag, membership.etag
    etags["user"] = etags["unlinked"]
    ids["mfa_user_id"], ids["mfa_secret"] = _two_factor_patient(client)
    # A sign-up waiting for its code.
    emails["pending"] = unique_email("pending")
    pending = {
        "email": emails["pending"],
        "password": PASSWORD,
        "display_name": "P",
        "timezone": "UTC",
    }
    assert client.post(f"{API}/auth/register", json=pending).status_code == 202
    ids["signup_code"] = signup_code(emails["pending"])
    return World(headers=headers, tokens=tokens, emails=emails, ids=ids, etags=etags, app=app)


def _two_factor_patient(client: FlaskClient) -> tuple[str, str]:
    """A patient with two-factor sign-in on (for the second step of a login)."""
    patient = register_patient(client)
    headers = _bearer(login(client, patient["email"]))
    enrolment = client.post(f"{API}/auth/2fa/enrol", json={"password": PASSWORD}, headers=headers)
    secret = enrolment.get_json()["secret"]
    code = pyotp.TOTP(secret).now()
    confirmed = client.post(f"{API}/auth/2fa/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200, confirmed.get_json()
    return patient["id"], secret


def _membership_id(db: Any, user_id: str, organisation_id: str) -> uuid.UUID:
    from sqlalchemy import select

    return db.scalars(
        select(Membership.id).where(
            Membership.user_id == uuid.UUID(user_id),
            Membership.organisation_id == uuid.UUID(organisation_id),
        )
    ).one()


PLACEHOLDER = re.compile(r"<(?:\w+:)?(\w+)>")


def _path(row: Row, world: World, *, absent: bool = False) -> str:
    """The row's route with the world's ids, or (``absent``) with ids that exist nowhere."""

    def value(match: re.Match[str]) -> str:
        if absent:
            return str(uuid.uuid4())
        name = match.group(1)
        return world.ids[row.ids.get(name, name)]

    path = PLACEHOLDER.sub(value, row.rule)
    return f"{path}?{row.query}" if row.query else path


CASES = [pytest.param(row, actor, id=f"{row.name}-{actor}") for row in TABLE for actor in ACTORS]


def _bound_to(connection: Any) -> sessionmaker[Any]:
    # As conftest's _transaction: each request's commit releases a savepoint, nothing more.
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture(scope="module")
def world_connection(app: Flask) -> Iterator[tuple[Any, World]]:
    """The world, built once on a connection of its own whose transaction is never committed.

    Building it per cell through the API costs ~0.25 s, 90 s for the table; instead every cell
    runs in a savepoint of this connection (see ``world``), so each still starts from exactly
    this world and nothing a cell does (an erasure, an ended link, a logout) outlives it.
    """
    services = app.extensions["moodtrack"]
    connection = services.engine.connect()
    outer = connection.begin()
    original = services.session_factory
    services.session_factory = _bound_to(connection)
    try:
        built = build_world(app)
    finally:
        services.session_factory = original
    try:
        yield connection, built
    finally:
        outer.rollback()
        connection.close()


@pytest.fixture
def world(app: Flask, _transaction: None, world_connection: tuple[Any, World]) -> Iterator[World]:
    """The module's world, for one cell: requests run in a savepoint rolled back after it."""
    services = app.extensions["moodtrack"]
    connection, built = world_connection
    cell = connection.begin_nested()
    before = services.session_factory  # the per-test one of conftest's _transaction
    services.session_factory = _bound_to(connection)
    try:
        yield built
    finally:
        services.session_factory = before
        # Drop any savepoint a request left open (a streamed body's own session releases
        # its savepoint only when the stream is closed) before the cell's own.
        inner = connection.get_nested_transaction()
        while inner is not None and inner is not cell:
            inner.rollback()
            inner = connection.get_nested_transaction()
        cell.rollback()


@pytest.mark.parametrize(("row", "actor"), CASES)
def test_authorization_matrix(
    app: Flask, client: FlaskClient, world: World, row: Row, actor: str
) -> None:
    path = _path(row, world)
    # The path built is the route the row names (not, say, /mood-entries/batch as an id).
    rule, _args = app.url_map.bind("localhost").match(
        path.partition("?")[0], method=row.method, return_rule=True
    )
    assert rule.rule == row.rule
    headers = dict(world.headers[actor])
    if row.if_match is not None:
        key = row.if_match if row.if_match != "actor" else actor
        headers["If-Match"] = world.etags.get(key, world.etags["patient"])
    body = row.body(world, actor) if row.body is not None else None
    # Buffered: a streamed body (the CSV report) is read here, within the cell.
    response = client.open(path, method=row.method, json=body, headers=headers, buffered=True)
    expected = row.expect[actor]
    assert response.status_code == expected, (row.name, actor, response.get_data(as_text=True))
    if expected >= 400:
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["status"] == expected
    if actor in OUTSIDERS and actor not in row.reveals:
        # Whatever an outsider may call (their own /me, an empty inbox or cohort) never
        # mentions the patient.
        text = response.get_data(as_text=True)
        assert world.ids["patient_id"] not in text
        assert world.emails["patient"] not in text
    if expected == 404:
        # Exactly as if it did not exist: the same problem as for ids that exist nowhere.
        absent = client.open(
            _path(row, world, absent=True),
            method=row.method,
            json=body,
            headers=headers,
            buffered=True,
        )
        assert absent.status_code == 404
        hidden, missing = response.get_json(), absent.get_json()
        for problem in (hidden, missing):
            problem.pop("instance", None)
        assert hidden == missing


def test_every_route_is_in_the_table(app: Flask) -> None:
    covered = {(row.method, row.rule) for row in TABLE}
    registered = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in NOT_OPERATIONS
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert registered - covered == set(), "routes missing from the authorization matrix"
    assert covered - registered == set(), "rows naming no route of the app"
    for row in TABLE:
        assert set(row.expect) == set(ACTORS), row.name
