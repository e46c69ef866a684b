"""The clinician's cohort: figures, sorting, filter, paging and a fixed number of queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from models import CareLink
from models.alerts import Alert
from models.cohort import cohort_page
from models.outcomes import RuleSet
from tests import factories as f
from tests.conftest import auth, make_staff

NOW = datetime.now(UTC).replace(microsecond=0)


def _link(db, clinician, patient):
    db.add(
        CareLink(
            patient_id=patient.id,
            clinician_id=uuid.UUID(clinician["id"]),
            organisation_id=uuid.UUID(clinician["organisation_id"]),
        )
    )
    db.flush()


def _alert(db, patient, acknowledged=False):
    db.add(
        Alert(
            patient_id=patient.id,
            rule="self_harm",
            priority="high",
            source_type="assessment",
            source_id=uuid.uuid4(),
            ruleset_version="t",
            details={},
            acknowledged_at=NOW if acknowledged else None,
        )
    )
    db.flush()


@pytest.fixture
def doctor(app, client):
    clinician = make_staff(app)
    clinician["headers"] = auth(client, clinician["email"])
    return clinician


def test_cohort_row_worked_by_hand(db, client, doctor):
    p = f.patient(db, "Pacific/Auckland")
    _link(db, doctor, p)
    s1 = NOW - timedelta(days=20)
    f.phq9(db, p, s1 - timedelta(days=20), 27)  # outside the fortnight before S1
    f.phq9(db, p, s1 - timedelta(days=10), 20)
    f.phq9(db, p, s1 - timedelta(days=2), 16)  # baseline (20 + 16) / 2 = 18
    f.session(db, p, s1)
    f.session(db, p, s1 + timedelta(days=7))
    f.session(db, p, s1 + timedelta(days=9), status="cancelled")
    f.phq9(db, p, NOW - timedelta(days=9), 14)  # more than 7 days before L: not current
    f.phq9(db, p, NOW - timedelta(days=5), 10)
    f.phq9(db, p, NOW - timedelta(days=1), 6)  # L: current (10 + 6) / 2 = 8
    for days in (0, 1, 1, 5):  # three distinct local dates within the last 14
        f.mood(db, p, NOW - timedelta(days=days, hours=1), 5)
    f.mood(db, p, NOW - timedelta(days=20), 5)  # older than 14 days
    _alert(db, p)
    _alert(db, p, acknowledged=True)
    response = client.get("/api/v1/patients", headers=doctor["headers"])
    assert response.status_code == 200
    (row,) = response.get_json()["items"]
    assert row["id"] == str(p.id)
    assert (row["latest_phq9"], row["latest_phq9_band"]) == (6, "mild")
    assert row["phq9_baseline"] == 18.0 and row["phq9_current"] == 8.0
    assert row["phq9_change"] == -10.0
    assert row["response"] is True and row["remission"] is False
    assert row["sessions_completed"] == 2
    assert row["last_session_start"].startswith((s1 + timedelta(days=7)).date().isoformat())
    assert row["adherence_14d"] == pytest.approx(3 / 14)
    assert row["open_alerts"] == 1 and row["needs_attention"] is True


def test_baseline_fallbacks_in_the_cohort(db, doctor):
    last_before, first_fortnight = f.patient(db), f.patient(db)
    for p in (last_before, first_fortnight):
        _link(db, doctor, p)
    f.phq9(db, last_before, NOW - timedelta(days=60), 22)  # long before S1: the fallback
    f.session(db, last_before, NOW - timedelta(days=30))
    f.phq9(db, last_before, NOW - timedelta(days=3), 11)
    f.phq9(db, first_fortnight, NOW - timedelta(days=40), 12)
    f.phq9(db, first_fortnight, NOW - timedelta(days=30), 8)  # within 14 d of the first
    f.phq9(db, first_fortnight, NOW - timedelta(days=20), 2)
    rows, _ = cohort_page(
        db=db, clinician_id=uuid.UUID(doctor["id"]), now=NOW, rules=RuleSet(), sort="name"
    )
    by_id = {r.patient_id: r for r in rows}
    assert by_id[last_before.id].phq9_baseline == 22.0
    assert by_id[last_before.id].response is True  # 11 <= 0.5 * 22
    assert by_id[first_fortnight.id].phq9_baseline == 10.0  # (12 + 8) / 2
    assert by_id[first_fortnight.id].remission is True  # current 2 < 5


def test_needs_attention_and_sorting(db, client, doctor):
    quiet, alerted, fine, idle = (f.patient(db) for _ in range(4))
    for p in (quiet, alerted, fine, idle):
        _link(db, doctor, p)
    f.session(db, quiet, NOW - timedelta(days=10))
    f.mood(db, quiet, NOW - timedelta(days=4), 5)  # quiet for 4 days after a recent session
    _alert(db, alerted)
    f.session(db, fine, NOW - timedelta(days=10))
    f.mood(db, fine, NOW - timedelta(hours=5), 5)
    f.phq9(db, fine, NOW - timedelta(days=1), 19)
    f.phq9(db, quiet, NOW - timedelta(days=1), 3)
    f.mood(db, idle, NOW - timedelta(days=40), 5)  # quiet, but no session in 30 days
    h = doctor["headers"]
    flagged = client.get("/api/v1/patients?needs_attention=true", headers=h).get_json()
    assert {i["id"] for i in flagged["items"]} == {str(quiet.id), str(alerted.id)}
    calm = client.get("/api/v1/patients?needs_attention=false", headers=h).get_json()
    assert {i["id"] for i in calm["items"]} == {str(fine.id), str(idle.id)}
    by_phq = client.get("/api/v1/patients?sort=-latest_phq9", headers=h).get_json()["items"]
    assert [i["id"] for i in by_phq[:2]] == [str(fine.id), str(quiet.id)]  # nulls last
    by_entry = client.get("/api/v1/patients?sort=-last_entry", headers=h).get_json()["items"]
    assert by_entry[0]["id"] == str(fine.id) and by_entry[-1]["last_entry_at"] is None
    assert client.get("/api/v1/patients?sort=-mood", headers=h).status_code == 422
    assert client.get("/api/v1/patients?needs_attention=yes", headers=h).status_code == 422


def test_paging_covers_everyone_once(db, client, doctor):
    patients = [f.patient(db) for _ in range(7)]
    for p in patients:
        _link(db, doctor, p)
    seen, cursor = [], None
    while True:
        url = "/api/v1/patients?limit=3&sort=name" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=doctor["headers"]).get_json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(p.id) for p in patients)
    assert len(seen) == len(set(seen))
    first = client.get("/api/v1/patients?limit=3&sort=name", headers=doctor["headers"])
    cursor = first.get_json()["next_cursor"]
    mismatched = client.get(
        f"/api/v1/patients?limit=3&sort=-name&cursor={cursor}", headers=doctor["headers"]
    )
    assert mismatched.status_code == 422


def _seed(db, doctor, count):
    for i in range(count):
        p = f.patient(db)
        _link(db, doctor, p)
        f.phq9(db, p, NOW - timedelta(days=30), 15 + i % 10)
        f.session(db, p, NOW - timedelta(days=20))
        f.phq9(db, p, NOW - timedelta(days=2), 5 + i % 10)
        f.mood(db, p, NOW - timedelta(days=i % 5), 5)
        if i % 3 == 0:
            _alert(db, p)


def _statements(app, client, headers, url):
    engine = app.extensions["moodtrack"].engine
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        response = client.get(url, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    return len(seen), len(response.get_json()["items"])


def test_a_page_costs_the_same_queries_for_10_and_200_patients(app, db, client, doctor):
    small = make_staff(app)
    small_headers = auth(client, small["email"])
    _seed(db, small, 10)
    _seed(db, doctor, 200)
    db.commit()
    ten = _statements(app, client, small_headers, "/api/v1/patients?limit=100")
    two_hundred = _statements(app, client, doctor["headers"], "/api/v1/patients?limit=100")
    assert ten[1] == 10 and two_hundred[1] == 100
    # BEGIN, auth, cohort, adherence; then the audit in its own transaction: BEGIN,
    # pseudonyms (look-up, upsert, read back the first time) and one insert.
    assert ten[0] == two_hundred[0] <= 12
