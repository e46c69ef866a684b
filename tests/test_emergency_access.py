"""Emergency access: who may open a record, for how long, how it is recorded and reviewed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from api import create_app
from models.accounts import Role
from models.emergency import EmergencyAccess
from models.organisations import MemberRole
from tests.conftest import (
    ContractClient,
    auth,
    link,
    make_organisation,
    make_staff,
    register_patient,
)

API = "/api/v1"
REASON = "Patient rang the out-of-hours line; her clinician is away. MARKER-7f3a"


@pytest.fixture
def clinic(app, client):
    """Organisation A: a patient linked to one clinician, a second clinician, an org admin;
    organisation B: a clinician."""
    organisation = make_organisation(app)
    linked = make_staff(app, organisation_id=organisation)
    covering = make_staff(app, organisation_id=organisation)
    admin = make_staff(app, organisation_id=organisation, member_role=MemberRole.org_admin)
    outsider = make_staff(app, organisation_id=make_organisation(app))
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    link(client, auth(client, linked["email"]), ph)
    return {
        "organisation": organisation,
        "patient": patient,
        "patient_headers": ph,
        "covering": covering,
        "covering_headers": auth(client, covering["email"]),
        "admin_headers": auth(client, admin["email"]),
        "outsider_headers": auth(client, outsider["email"]),
    }


def _open(client, clinic, headers=None, reason=REASON):
    return client.post(
        f"{API}/patients/{clinic['patient']['id']}/emergency-access",
        json={"reason": reason},
        headers=headers or clinic["covering_headers"],
    )


def test_a_clinician_of_the_organisation_opens_the_record_for_an_hour(client, clinic):
    url = f"{API}/patients/{clinic['patient']['id']}"
    headers = clinic["covering_headers"]
    assert client.get(url, headers=headers).status_code == 404
    opened = _open(client, clinic)
    assert opened.status_code == 201
    body = opened.get_json()
    assert REASON not in opened.get_data(as_text=True)
    started = datetime.fromisoformat(body["started_at"])
    assert datetime.fromisoformat(body["expires_at"]) - started == timedelta(hours=1)
    assert body["organisation_id"] == clinic["organisation"]
    assert client.get(url, headers=headers).status_code == 200
    assert client.get(f"{url}/trends?metric=mood", headers=headers).status_code == 200
    # Not in the cohort: that is the linked patients'.
    assert client.get(f"{API}/patients", headers=headers).get_json()["items"] == []
    # A second one while this one runs: 409.
    assert _open(client, clinic).status_code == 409


def test_the_patients_access_log_shows_emergency_access_without_the_reason(
    app, client, clinic, capsys
):
    client.get(f"{API}/patients/me/mood-entries", headers=clinic["patient_headers"])
    _open(client, clinic)
    client.get(f"{API}/patients/{clinic['patient']['id']}", headers=clinic["covering_headers"])
    log = client.get(f"{API}/patients/me/access-log", headers=clinic["patient_headers"])
    text = log.get_data(as_text=True)
    assert "MARKER-7f3a" not in text
    emergency = [e for e in log.get_json()["items"] if e["emergency_access"]]
    assert {e["action"] for e in emergency} == {"emergency_access", "read"}
    assert all(e["actor_role"] == "clinician" for e in emergency)
    # Everything else the patient sees is marked as ordinary.
    assert any(not e["emergency_access"] for e in log.get_json()["items"])
    # The operator's audit search has the flag too; nothing has the reason, no log line either.
    operator = auth(client, make_staff(app, role=Role.admin)["email"])
    events = client.get(
        f"{API}/audit-events?patient_id={clinic['patient']['id']}&action=emergency_access",
        headers=operator,
    )
    assert [e["emergency"] for e in events.get_json()["items"]] == [True]
    assert "MARKER-7f3a" not in events.get_data(as_text=True)
    assert "MARKER-7f3a" not in capsys.readouterr().err


def test_outside_the_organisation_it_is_as_if_the_patient_did_not_exist(client, clinic):
    hidden = _open(client, clinic, headers=clinic["outsider_headers"])
    missing = client.post(
        f"{API}/patients/{uuid.uuid4()}/emergency-access",
        json={"reason": REASON},
        headers=clinic["outsider_headers"],
    )
    assert hidden.status_code == missing.status_code == 404
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "instance"}  # noqa: E731
    assert strip(hidden) == strip(missing)
    # Nor may a patient or an org admin open one.
    assert _open(client, clinic, headers=clinic["patient_headers"]).status_code == 403
    assert _open(client, clinic, headers=clinic["admin_headers"]).status_code == 404


def test_a_reason_is_required(client, clinic):
    for body in ({}, {"reason": "short"}, {"reason": "x" * 1001}):
        response = client.post(
            f"{API}/patients/{clinic['patient']['id']}/emergency-access",
            json=body,
            headers=clinic["covering_headers"],
        )
        assert response.status_code == 422 and "reason" in response.get_json()["errors"]
        assert "x" * 100 not in response.get_data(as_text=True)


def test_it_ends_by_itself(client, db, clinic):
    _open(client, clinic)
    url = f"{API}/patients/{clinic['patient']['id']}"
    assert client.get(url, headers=clinic["covering_headers"]).status_code == 200
    db.execute(
        update(EmergencyAccess)
        .where(EmergencyAccess.patient_id == uuid.UUID(clinic["patient"]["id"]))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.commit()
    assert client.get(url, headers=clinic["covering_headers"]).status_code == 404
    # And it can be opened again, for a new reason.
    assert _open(client, clinic).status_code == 201


def test_it_ends_when_the_patient_leaves_the_organisation(client, clinic):
    _open(client, clinic)
    links = client.get(f"{API}/care-links", headers=clinic["patient_headers"]).get_json()["items"]
    assert (
        client.delete(
            f"{API}/care-links/{links[0]['id']}", headers=clinic["patient_headers"]
        ).status_code
        == 204
    )
    url = f"{API}/patients/{clinic['patient']['id']}"
    assert client.get(url, headers=clinic["covering_headers"]).status_code == 404


def test_org_admins_review_each_emergency_access_once(client, clinic):
    _open(client, clinic)
    url = f"{API}/organisations/{clinic['organisation']}/emergency-accesses"
    pending = client.get(f"{url}?reviewed=false", headers=clinic["admin_headers"]).get_json()[
        "items"
    ]
    assert len(pending) == 1
    item = pending[0]
    assert item["reason"] == REASON and item["active"] is True and item["reviewed"] is False
    assert item["patient_id"] == clinic["patient"]["id"]
    assert item["clinician_id"] == clinic["covering"]["id"]
    # Not for the clinicians, nor for another organisation.
    assert client.get(url, headers=clinic["covering_headers"]).status_code == 403
    assert client.get(url, headers=clinic["outsider_headers"]).status_code == 404
    review = f"{url}/{item['id']}/review"
    done = client.post(review, headers=clinic["admin_headers"])
    assert done.status_code == 200 and done.get_json()["reviewed"] is True
    assert client.post(review, headers=clinic["admin_headers"]).status_code == 409
    assert (
        client.get(f"{url}?reviewed=false", headers=clinic["admin_headers"]).get_json()["items"]
        == []
    )
    assert client.get(f"{url}?reviewed=maybe", headers=clinic["admin_headers"]).status_code == 422


def test_the_duration_is_configured(app, settings, client, clinic):
    short = create_app(settings.with_overrides(emergency_access_duration=timedelta(minutes=5)))
    short.test_client_class = ContractClient
    services = short.extensions["moodtrack"]
    services.session_factory = app.extensions["moodtrack"].session_factory
    try:
        body = _open(short.test_client(), clinic).get_json()
    finally:
        services.engine.dispose()
    span = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["started_at"])
    assert span == timedelta(minutes=5)
