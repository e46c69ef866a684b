"""Invites, care links and who may see which patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from models import Invite, Role
from tests.conftest import auth, link, make_staff, register_patient


@pytest.fixture
def team(app, client):
    clinician = make_staff(app)
    patient = register_patient(client)
    return {
        "clinician": clinician,
        "clinician_headers": auth(client, clinician["email"]),
        "patient": patient,
        "patient_headers": auth(client, patient["email"]),
    }


def test_invite_code_shape_and_expiry(client, team):
    response = client.post("/api/v1/invites", headers=team["clinician_headers"])
    assert response.status_code == 201
    body = response.get_json()
    code = body["code"].replace("-", "")
    assert len(code) == 10  # 10 symbols of a 30-letter alphabet: 49 bits
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)


def test_only_clinicians_create_invites(client, team):
    assert client.post("/api/v1/invites", headers=team["patient_headers"]).status_code == 403
    assert client.post("/api/v1/invites").status_code == 401


def test_link_with_code_and_both_sides_list_it(client, team):
    link_id = link(client, team["clinician_headers"], team["patient_headers"])
    for headers in (team["clinician_headers"], team["patient_headers"]):
        listed = client.get("/api/v1/care-links", headers=headers).get_json()
        assert [item["id"] for item in listed["items"]] == [link_id]
        assert listed["items"][0]["patient"]["id"] == team["patient"]["id"]
        assert listed["items"][0]["clinician"]["id"] == team["clinician"]["id"]


def test_code_is_single_use(client, team):
    code = client.post("/api/v1/invites", headers=team["clinician_headers"]).get_json()["code"]
    first = client.post(
        "/api/v1/care-links", json={"code": code.lower()}, headers=team["patient_headers"]
    )
    assert first.status_code == 201  # case and dashes do not matter to people typing
    other = register_patient(client)
    again = client.post(
        "/api/v1/care-links", json={"code": code}, headers=auth(client, other["email"])
    )
    assert again.status_code == 422 and "code" in again.get_json()["errors"]


def test_expired_and_unknown_codes_are_refused(client, db, team):
    code = client.post("/api/v1/invites", headers=team["clinician_headers"]).get_json()["code"]
    db.execute(update(Invite).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()
    for attempt in (code, "AAAAA-AAAAA"):
        response = client.post(
            "/api/v1/care-links", json={"code": attempt}, headers=team["patient_headers"]
        )
        assert response.status_code == 422


def test_object_level_access_to_a_patient_profile(app, client, team):
    url = f"/api/v1/patients/{team['patient']['id']}"
    other_patient = register_patient(client)
    unlinked = make_staff(app)
    # Before linking, the clinician cannot see the patient: 404 as if absent.
    assert client.get(url, headers=team["clinician_headers"]).status_code == 404
    link_id = link(client, team["clinician_headers"], team["patient_headers"])
    linked = client.get(url, headers=team["clinician_headers"])
    assert linked.status_code == 200 and linked.get_json()["linked_since"]
    assert client.get(url, headers=team["patient_headers"]).status_code == 200
    me = client.get("/api/v1/patients/me", headers=team["patient_headers"])
    assert me.status_code == 200 and me.get_json()["id"] == team["patient"]["id"]
    assert client.get(url, headers=auth(client, other_patient["email"])).status_code == 404
    assert client.get(url, headers=auth(client, unlinked["email"])).status_code == 404
    assert client.get(url).status_code == 401
    missing = client.get(
        "/api/v1/patients/00000000-0000-0000-0000-000000000000", headers=team["clinician_headers"]
    )
    unseen = client.get(url, headers=auth(client, unlinked["email"]))
    # Indistinguishable from a patient that does not exist.
    assert missing.get_json()["detail"] == unseen.get_json()["detail"]
    assert (
        client.get("/api/v1/patients/not-a-uuid", headers=team["clinician_headers"]).status_code
        == 404
    )
    assert client.get("/api/v1/patients/me", headers=team["clinician_headers"]).status_code == 404

    # The link ends: access goes on the very next request.
    ended = client.delete(f"/api/v1/care-links/{link_id}", headers=team["patient_headers"])
    assert ended.status_code == 204
    assert client.get(url, headers=team["clinician_headers"]).status_code == 404
    assert (
        client.get("/api/v1/care-links", headers=team["clinician_headers"]).get_json()["items"]
        == []
    )


def test_clinician_can_end_a_link_but_strangers_cannot(app, client, team):
    link_id = link(client, team["clinician_headers"], team["patient_headers"])
    stranger = auth(client, make_staff(app)["email"])
    assert client.delete(f"/api/v1/care-links/{link_id}", headers=stranger).status_code == 404
    assert (
        client.delete(
            f"/api/v1/care-links/{link_id}", headers=team["clinician_headers"]
        ).status_code
        == 204
    )
    assert (
        client.delete(
            f"/api/v1/care-links/{link_id}", headers=team["clinician_headers"]
        ).status_code
        == 404
    )


def test_relinking_after_an_end_works_and_double_link_is_409(client, team):
    link_id = link(client, team["clinician_headers"], team["patient_headers"])
    code = client.post("/api/v1/invites", headers=team["clinician_headers"]).get_json()["code"]
    duplicate = client.post(
        "/api/v1/care-links", json={"code": code}, headers=team["patient_headers"]
    )
    assert duplicate.status_code == 409
    client.delete(f"/api/v1/care-links/{link_id}", headers=team["patient_headers"])
    assert link(client, team["clinician_headers"], team["patient_headers"]) != link_id


def test_patient_list_pages_with_cursor(app, client, team):
    patients = [team["patient"]] + [register_patient(client) for _ in range(4)]
    for p in patients:
        headers = team["patient_headers"] if p is team["patient"] else auth(client, p["email"])
        link(client, team["clinician_headers"], headers)
    seen, cursor = [], None
    while True:
        url = "/api/v1/patients?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=team["clinician_headers"]).get_json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(p["id"] for p in patients)
    assert len(seen) == len(set(seen))
    assert client.get("/api/v1/patients", headers=team["patient_headers"]).status_code == 403


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=abc", "cursor=%%%", "cursor=WzFd"]
)
def test_bad_paging_parameters(client, team, query):
    response = client.get(f"/api/v1/patients?{query}", headers=team["clinician_headers"])
    assert response.status_code == 422


def test_admin_sees_no_patient_data(app, client, team):
    admin_headers = auth(client, make_staff(app, role=Role.admin)["email"])
    url = f"/api/v1/patients/{team['patient']['id']}"
    assert client.get(url, headers=admin_headers).status_code in (403, 404)
