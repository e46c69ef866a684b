"""The clinician report (JSON, CSV, FHIR), the SVG chart and the patient's export."""

from __future__ import annotations

import csv
import inspect
import io
import json
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import event, func, select

from api.resources.reports import csv_cell
from models import (
    Alert,
    Assessment,
    CareLink,
    MoodEntry,
    MoodEntryVersion,
    Observation,
    Role,
    TreatmentSession,
    User,
)
from models.audit import AuditEvent
from models.instruments import CATALOGUE, score
from models.reports import CSV_HEADER, measurement_rows
from models.sessions import Drug, Route
from schemas.fhir import resource_counts
from tests import factories as f
from tests.conftest import auth, link, make_organisation, make_staff, register_patient

SVG = "{http://www.w3.org/2000/svg}"


def _form(db, who, instrument: str, at: str, answers: list[int]) -> Assessment:
    result = score(CATALOGUE[instrument], answers)
    form = Assessment(
        patient_id=who.id,
        instrument=instrument,
        answers=answers,
        total=result.total,
        band=result.band.code if result.band else None,
        flags=list(result.flags),
        instrument_version="1.0",
        scoring_version="1.0",
        ruleset_version="t",
        fingerprint=uuid.uuid4().hex,
    )
    form.set_occurred_at(datetime.fromisoformat(at))
    db.add(form)
    db.flush()
    return form


@pytest.fixture
def care(app, client, db):
    """A patient at UTC-8 with a small, hand-checked record, linked to a clinician."""
    patient = register_patient(client, timezone="America/Los_Angeles")
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    who = db.get(User, uuid.UUID(patient["id"]))
    _form(db, who, "phq9", "2026-02-28T10:00:00-08:00", [2, 2, 2, 2, 2, 2, 2, 2, 0])  # 16
    f.mood(db, who, "2026-03-01T23:30:00-08:00", 4, anxiety=6, sleep_hours=6.5)  # local 1 Mar
    s1 = f.session(db, who, "2026-03-02T09:00:00-08:00")
    f.mood(db, who, "2026-03-02T08:30:00-08:00", 3, session_id=s1.id, phase="pre")
    f.mood(db, who, "2026-03-02T12:00:00-08:00", 7, energy=6, session_id=s1.id, phase="post")
    f.session(db, who, "2026-03-03T09:00:00-08:00", status="cancelled")  # never counts
    f.mood(db, who, "2026-03-04T10:00:00-08:00", 6, note='=HYPERLINK("x")')
    s2 = f.session(db, who, "2026-03-05T09:00:00-08:00")
    s2.drug, s2.route, s2.dose_mg = Drug.esketamine, Route.intranasal, 56
    f.mood(db, who, "2026-03-05T09:00:00-08:00", 5)  # at S2's start: in S2's span
    gone = f.mood(db, who, "2026-03-06T09:00:00-08:00", 1)
    gone.deleted_at = gone.occurred_at  # deleted entries are not measurements
    _form(db, who, "phq9", "2026-03-06T10:00:00-08:00", [1, 1, 1, 1, 1, 1, 1, 1, 0])  # 8
    _form(db, who, "gad7", "2026-03-06T10:05:00-08:00", [1] * 7)  # 7
    _form(db, who, "qids_sr16", "2026-03-06T10:10:00-08:00", [1] * 16)  # 9 domains = 9
    db.flush()
    db.commit()
    base = f"/api/v1/patients/{patient['id']}"
    return {"patient": patient, "who": who, "ph": ph, "ch": ch, "base": base, "s1": s1, "s2": s2}


# ---------------------------------------------------------------- JSON


def test_json_report_course_trends_and_counts(client, care):
    response = client.get(f"{care['base']}/report", headers=care["ch"])
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["patient"] == {
        "id": care["patient"]["id"],
        "display_name": "Pat",
        "timezone": "America/Los_Angeles",
    }
    assert body["from"] is None and body["to"] is None
    assert body["course"]["sessions_completed"] == 2
    assert [s["number"] for s in body["course"]["sessions"]] == [1, 2]
    # S1's pre is its linked pre check-in (3); acute window (s, s + 4 h]: the 7 at +3 h.
    assert body["course"]["sessions"][0]["pre"] == 3.0
    assert body["course"]["sessions"][0]["acute"] == 7.0
    assert body["counts"] == {
        "mood_entries": 5,
        "assessments": {"phq9": 2, "gad7": 1, "qids_sr16": 1, "madrs": 0, "cadss": 0},
        "sessions_completed": 2,
        "measurements": 12,
    }
    trends = {t["metric"]: t for t in body["trends"]}
    assert list(trends) == ["mood", "anxiety", "energy", "sleep_hours", "phq9", "gad7", "qids_sr16"]
    mood = trends["mood"]
    # Local days 1 Mar {4}, 2 Mar {3, 7}, 4 Mar {6}, 5 Mar {5}: mean (4+3+7+6+5)/5 = 5.
    assert (mood["days_with_data"], mood["measurements"], mood["mean"]) == (4, 5, 5.0)
    assert (mood["first_date"], mood["last_date"]) == ("2026-03-01", "2026-03-05")
    assert mood["direction"] == "up" and trends["phq9"]["direction"] == "down"
    # PHQ-9 baseline: the 16 (the fortnight before S1); current: the week (L - 7 d, L] up
    # to the 8 on 6 March still holds the 16 of 28 February, so (16 + 8) / 2 = 12; the band
    # is the latest single value's (8: mild).
    phq9 = trends["phq9"]["summary"]
    assert (phq9["baseline"], phq9["current"], phq9["band"]) == (16.0, 12.0, "mild")
    assert phq9["response"] is False  # 12 > 0.5 * 16


def test_json_report_range_bounds_trends_and_counts(client, care):
    response = client.get(
        f"{care['base']}/report?from=2026-03-02&to=2026-03-04", headers=care["ph"]
    )
    body = response.get_json()
    assert body["from"] == "2026-03-02" and body["to"] == "2026-03-04"
    # 2 Mar: mood 3, mood 7, energy 6; 4 Mar: mood 6.
    assert body["counts"]["measurements"] == 4 and body["counts"]["mood_entries"] == 3
    assert body["counts"]["sessions_completed"] == 1
    mood = next(t for t in body["trends"] if t["metric"] == "mood")
    assert (mood["days_with_data"], mood["mean"]) == (2, pytest.approx(16 / 3))
    assert body["course"]["sessions_completed"] == 2  # the course is never cut by a range


@pytest.mark.parametrize("query", ["from=2026-03-05&to=2026-03-01", "from=yesterday", "format=xml"])
def test_report_bad_parameters_are_422(client, care, query):
    assert client.get(f"{care['base']}/report?{query}", headers=care["ch"]).status_code == 422


# ---------------------------------------------------------------- CSV


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_has_a_header_and_one_row_per_measurement_in_time_order(client, care):
    response = client.get(f"{care['base']}/report", headers={**care["ch"], "Accept": "text/csv"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "Pat" not in response.headers["Content-Disposition"]
    rows = _csv(response)
    assert rows[0] == list(CSV_HEADER)
    assert rows[1:] == [
        ["2026-02-28", "2026-02-28T18:00:00Z", "UTC-08:00", "phq9", "16", "", ""],
        # 23:30 at UTC-8 is 07:30 UTC the next day, but the local date stays 1 March.
        ["2026-03-01", "2026-03-02T07:30:00Z", "UTC-08:00", "mood", "4", "", ""],
        ["2026-03-01", "2026-03-02T07:30:00Z", "UTC-08:00", "anxiety", "6", "", ""],
        ["2026-03-01", "2026-03-02T07:30:00Z", "UTC-08:00", "sleep_hours", "6.5", "", ""],
        # A pre check-in belongs to the session it precedes, though S1 has not started.
        ["2026-03-02", "2026-03-02T16:30:00Z", "UTC-08:00", "mood", "3", "1", "pre"],
        ["2026-03-02", "2026-03-02T20:00:00Z", "UTC-08:00", "mood", "7", "1", "post"],
        ["2026-03-02", "2026-03-02T20:00:00Z", "UTC-08:00", "energy", "6", "1", "post"],
        # The cancelled session on 3 March does not start a span.
        ["2026-03-04", "2026-03-04T18:00:00Z", "UTC-08:00", "mood", "6", "1", ""],
        # Exactly at S2's start: S2 started at or before it.
        ["2026-03-05", "2026-03-05T17:00:00Z", "UTC-08:00", "mood", "5", "2", ""],
        ["2026-03-06", "2026-03-06T18:00:00Z", "UTC-08:00", "phq9", "8", "2", ""],
        ["2026-03-06", "2026-03-06T18:05:00Z", "UTC-08:00", "gad7", "7", "2", ""],
        ["2026-03-06", "2026-03-06T18:10:00Z", "UTC-08:00", "qids_sr16", "9", "2", ""],
    ]
    # format=csv is the same document; a range bounds it by local date.
    same = client.get(f"{care['base']}/report?format=csv", headers=care["ph"])
    assert _csv(same) == rows
    ranged = client.get(
        f"{care['base']}/report?format=csv&from=2026-03-02&to=2026-03-04", headers=care["ph"]
    )
    assert [r[0] for r in _csv(ranged)[1:]] == ["2026-03-02"] * 3 + ["2026-03-04"]


def test_csv_pre_check_in_carries_the_number_of_the_session_it_precedes(client, db):
    # Issue 14: a pre check-in between S1 and S2 read "1", as if it belonged to S1.
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    who = db.get(User, uuid.UUID(patient["id"]))
    s1 = f.session(db, who, "2026-03-02T09:00:00+00:00")
    s2 = f.session(db, who, "2026-03-09T09:00:00+00:00")
    later = f.session(db, who, "2026-03-16T09:00:00+00:00", status="scheduled")
    f.mood(db, who, "2026-03-02T12:00:00+00:00", 6, session_id=s1.id, phase="post")
    f.mood(db, who, "2026-03-05T12:00:00+00:00", 5)  # in S1's span
    f.mood(db, who, "2026-03-09T08:00:00+00:00", 3, session_id=s2.id, phase="pre")
    f.mood(db, who, "2026-03-09T11:00:00+00:00", 7, session_id=s2.id, phase="post")
    # Its session has no number yet (not completed): none, rather than the previous one's.
    f.mood(db, who, "2026-03-16T08:00:00+00:00", 4, session_id=later.id, phase="pre")
    db.commit()
    response = client.get(f"/api/v1/patients/{patient['id']}/report?format=csv", headers=ph)
    rows = [(r[5], r[6]) for r in _csv(response)[1:]]
    assert rows == [("1", "post"), ("1", ""), ("2", "pre"), ("2", "post"), ("", "pre")]


def test_csv_never_starts_a_cell_with_a_formula_character(client, care):
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("+cmd") == "'+cmd" and csv_cell("-08:00") == "'-08:00"
    assert csv_cell("-2.5") == "-2.5" and csv_cell("7") == "7" and csv_cell(None) == ""
    response = client.get(f"{care['base']}/report?format=csv", headers=care["ph"])
    for row in _csv(response):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")) or cell.lstrip("+-").isdigit()
    # The note that looks like a formula is never part of the CSV.
    assert "HYPERLINK" not in response.get_data(as_text=True)


def test_csv_is_streamed_from_a_generator_reading_sql_in_batches(app, care, db):
    assert inspect.isgenerator(measurement_rows(db=db, patient_id=care["who"].id))
    options = []

    def spy(conn, cursor, statement, parameters, context, executemany):
        if "UNION ALL" in statement:
            options.append(dict(context.execution_options))

    engine = app.extensions["moodtrack"].engine
    event.listen(engine, "before_cursor_execute", spy)
    try:
        with app.test_request_context(
            f"{care['base']}/report", headers={**care["ch"], "Accept": "text/csv"}
        ):
            response = app.full_dispatch_request()
            assert response.is_streamed and inspect.isgenerator(response.response)
            assert options == []  # nothing read yet: rows come when the body is consumed
            chunks = list(response.response)
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    assert len(chunks) == 13  # the header, then one chunk per row
    assert chunks[0].startswith("local_date,")
    assert options and options[0].get("yield_per") and options[0].get("stream_results")


# ---------------------------------------------------------------- FHIR


def _validated(document: dict) -> Counter:
    Bundle.model_validate(document)  # the whole bundle, as R4B (R4's content for these)
    for entry in document["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
    ids = [e["resource"]["id"] for e in document["entry"]]
    assert len(ids) == len(set(ids))
    return resource_counts(document)


def test_fhir_bundle_validates_and_matches_the_database(client, care, db):
    response = client.get(f"{care['base']}/report?format=fhir", headers=care["ch"])
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    assert response.headers["Cache-Control"] == "no-store"
    document = json.loads(response.get_data())
    assert document["resourceType"] == "Bundle" and document["type"] == "collection"
    counts = _validated(document)
    pid = care["who"].id
    forms = db.scalar(
        select(func.count()).where(Assessment.patient_id == pid, Assessment.deleted_at.is_(None))
    )
    values = sum(
        sum(getattr(e, m) is not None for m in ("mood", "anxiety", "energy", "sleep_hours"))
        for e in db.scalars(
            select(MoodEntry).where(MoodEntry.patient_id == pid, MoodEntry.deleted_at.is_(None))
        )
    )
    completed = db.scalar(
        select(func.count()).where(
            TreatmentSession.patient_id == pid,
            TreatmentSession.status == "completed",
            TreatmentSession.deleted_at.is_(None),
        )
    )
    assert (forms, values, completed) == (4, 8, 2)
    assert counts == Counter(
        Patient=1, QuestionnaireResponse=forms, Observation=forms + values, Procedure=completed
    )
    # The same bundle is reached by its media type.
    by_accept = client.get(
        f"{care['base']}/report", headers={**care["ph"], "Accept": "application/fhir+json"}
    )
    assert resource_counts(json.loads(by_accept.get_data())) == counts


def test_fhir_codes_links_and_answers(client, care):
    document = json.loads(
        client.get(f"{care['base']}/report?format=fhir", headers=care["ph"]).get_data()
    )
    resources = [e["resource"] for e in document["entry"]]
    patient_ref = {"reference": f"urn:uuid:{care['patient']['id']}"}
    responses = {r["id"]: r for r in resources if r["resourceType"] == "QuestionnaireResponse"}
    totals = [r for r in resources if r["resourceType"] == "Observation" and "derivedFrom" in r]
    codes = sorted(
        (t["code"]["coding"][0]["system"], t["code"]["coding"][0]["code"]) for t in totals
    )
    assert codes == [
        ("http://loinc.org", "44261-6"),
        ("http://loinc.org", "44261-6"),
        ("http://loinc.org", "70274-6"),
        ("urn:moodtrack:instrument", "qids_sr16"),
    ]
    for total in totals:
        assert total["category"][0]["coding"][0]["code"] == "survey"
        assert total["subject"] == patient_ref and total["status"] == "final"
        source = total["derivedFrom"][0]["reference"].removeprefix("urn:uuid:")
        assert responses[source]["status"] == "completed"
    phq9 = next(r for r in responses.values() if r["authored"].startswith("2026-02-28"))
    assert phq9["authored"] == "2026-02-28T10:00:00-08:00"  # the patient's own clock
    assert [i["linkId"] for i in phq9["item"]][:2] == ["44250-9", "44255-8"]
    assert phq9["item"][8]["linkId"] == "44260-8"
    assert phq9["item"][0]["answer"][0]["valueCoding"]["code"] == "LA6570-1"  # answer 2
    gad7 = next(r for r in responses.values() if r["questionnaire"].endswith("gad7"))
    assert gad7["item"][0]["linkId"] == "gad7.1"  # GAD-7 item codes are not verified
    metrics = Counter(
        r["code"]["coding"][0]["code"]
        for r in resources
        if r["resourceType"] == "Observation"
        and r["code"]["coding"][0]["system"] == "urn:moodtrack:metric"
    )
    assert metrics == Counter(mood=5, anxiety=1, energy=1, sleep_hours=1)
    sleep = next(
        r
        for r in resources
        if r.get("code", {}).get("coding", [{}])[0].get("code") == "sleep_hours"
    )
    assert sleep["valueQuantity"] == {
        "value": 6.5,
        "unit": "h",
        "system": "http://unitsofmeasure.org",
        "code": "h",
    }
    procedures = [r for r in resources if r["resourceType"] == "Procedure"]
    assert [p["code"]["text"] for p in procedures] == [
        "ketamine treatment session",
        "esketamine treatment session",
    ]
    assert procedures[1]["usedCode"][0]["coding"][0]["code"] == "2201623"
    assert "coding" not in procedures[0]["usedCode"][0]


# ---------------------------------------------------------------- chart


def _svg(client, url, headers):
    response = client.get(url, headers=headers)
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    return ET.fromstring(response.get_data(as_text=True)), response.get_data(as_text=True)


def _by_class(root, name):
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def test_chart_points_markers_and_accessibility(client, care):
    root, text = _svg(client, f"{care['base']}/chart.svg", care["ch"])
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.get("viewBox") == "0 0 640 400"
    title = root.find(f"{SVG}title").text
    assert "Mood" in title and "higher is better" in title
    assert root.find(f"{SVG}desc").text.startswith("Mood, daily mean on a scale of 0 to 10")
    # Days with mood data: 1, 2, 4, 5 March; on 2 March (S1's day) the pre check-in before
    # the session and the post check-in after it are two marks; on 5 March the entry at
    # S2's very start counts from the session on.
    points = [(p.get("data-date"), p.get("data-side")) for p in _by_class(root, "point")]
    assert points == [
        ("2026-03-01", ""),
        ("2026-03-02", "before"),
        ("2026-03-02", "after"),
        ("2026-03-04", ""),
        ("2026-03-05", "after"),
    ]
    markers = _by_class(root, "session-marker")
    assert [m.get("data-number") for m in markers] == ["1", "2"]  # completed sessions only
    assert _by_class(root, "band") == []  # mood has no severity bands
    assert len(_by_class(root, "date-label")) >= 2
    assert "Pat" not in text and care["patient"]["email"] not in text


def test_chart_phq9_has_its_bands_and_lower_is_better(client, care):
    root, _ = _svg(client, f"{care['base']}/chart.svg?metric=phq9", care["ph"])
    bands = _by_class(root, "band")
    assert [b.get("data-band") for b in bands] == [
        "minimal",
        "mild",
        "moderate",
        "moderately_severe",
        "severe",
    ]
    assert "lower is better" in root.find(f"{SVG}title").text
    assert len(_by_class(root, "point")) == 2
    # A range keeps only the sessions that started in it.
    root, _ = _svg(
        client, f"{care['base']}/chart.svg?metric=phq9&from=2026-03-04&to=2026-03-10", care["ph"]
    )
    assert len(_by_class(root, "session-marker")) == 1 and len(_by_class(root, "point")) == 1


def test_chart_without_data_and_bad_metric(client, app):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    root, _ = _svg(client, "/api/v1/patients/me/chart.svg?metric=gad7", ph)
    assert _by_class(root, "point") == [] and len(_by_class(root, "band")) == 4
    assert client.get("/api/v1/patients/me/chart.svg?metric=joy", headers=ph).status_code == 422


# ---------------------------------------------------------------- export


def test_export_counts_match_the_database(client, care, db):
    pid = care["who"].id
    # History: change one entry through the API; alerts: a PHQ-9 with a positive item 9.
    entry = db.scalars(
        select(MoodEntry).where(MoodEntry.patient_id == pid, MoodEntry.mood == 6)
    ).one()
    url = f"/api/v1/patients/me/mood-entries/{entry.id}"
    etag = client.get(url, headers=care["ph"]).headers["ETag"]
    changed = client.patch(url, json={"mood": 7}, headers={**care["ph"], "If-Match": etag})
    assert changed.status_code == 200
    posted = client.post(
        "/api/v1/patients/me/assessments",
        json={
            "instrument": "phq9",
            "answers": [1, 1, 1, 1, 1, 1, 1, 1, 1],
            "occurred_at": datetime.now().astimezone().isoformat(),
        },
        headers=care["ph"],
    )
    assert posted.status_code == 201
    db.add(
        Observation(
            session_id=care["s1"].id,
            patient_id=pid,
            observed_at=care["s1"].started_at,
            utc_offset_minutes=-480,
            systolic=128,
            diastolic=82,
            fingerprint="written directly",
        )
    )
    db.commit()

    response = client.get("/api/v1/me/export", headers=care["ph"])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    live_entries = select(MoodEntry.id).where(
        MoodEntry.patient_id == pid, MoodEntry.deleted_at.is_(None)
    )
    expected = {
        "mood_entries": db.scalar(select(func.count()).select_from(live_entries.subquery())),
        "mood_entry_versions": db.scalar(
            select(func.count()).where(MoodEntryVersion.entry_id.in_(live_entries))
        ),
        "assessments": db.scalar(
            select(func.count()).where(
                Assessment.patient_id == pid, Assessment.deleted_at.is_(None)
            )
        ),
        "sessions": db.scalar(
            select(func.count()).where(
                TreatmentSession.patient_id == pid, TreatmentSession.deleted_at.is_(None)
            )
        ),
        "observations": db.scalar(select(func.count()).where(Observation.patient_id == pid)),
        "alerts": db.scalar(select(func.count()).where(Alert.patient_id == pid)),
        "care_links": db.scalar(select(func.count()).where(CareLink.patient_id == pid)),
    }
    assert expected == {
        "mood_entries": 5,
        "mood_entry_versions": 1,
        "assessments": 5,
        "sessions": 3,
        "observations": 1,
        "alerts": 1,
        "care_links": 1,
    }
    assert body["counts"] == expected
    assert {name: len(body[name]) for name in expected} == expected
    assert body["profile"]["id"] == str(pid) and body["profile"]["role"] == "patient"
    assert body["mood_entry_versions"][0]["snapshot"]["mood"] == 6
    assert [s["number"] for s in body["sessions"]] == [1, None, 2]

    fhir = client.get("/api/v1/me/export?format=fhir", headers=care["ph"])
    assert fhir.mimetype == "application/fhir+json"
    counts = _validated(json.loads(fhir.get_data()))
    assert counts == Counter(Patient=1, QuestionnaireResponse=5, Observation=5 + 8, Procedure=2)
    assert client.get("/api/v1/me/export?format=csv", headers=care["ph"]).status_code == 422


# ---------------------------------------------------------------- access


def test_access_rules(app, client, care):
    other = register_patient(client)
    oh = auth(client, other["email"])
    stranger = auth(client, make_staff(app)["email"])
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    for path in ("report", "report?format=csv", "report?format=fhir", "chart.svg"):
        url = f"{care['base']}/{path}"
        assert client.get(url, headers=oh).status_code == 404, path
        assert client.get(url, headers=stranger).status_code == 404, path
        assert client.get(url).status_code == 401, path
        assert client.get(url, headers=admin).status_code == 403, path
        assert client.get(url, headers=care["ph"]).status_code == 200, path
        assert client.get(url, headers=care["ch"]).status_code == 200, path
    assert client.get("/api/v1/patients/me/report", headers=care["ch"]).status_code == 404
    assert client.get("/api/v1/me/export").status_code == 401
    assert client.get("/api/v1/me/export", headers=care["ch"]).status_code == 403
    assert client.get("/api/v1/me/export", headers=admin).status_code == 403


# ---------------------------------------------------------------- typed representations

# Each typed operation, the compatibility form it equals, and its one media type.
TYPED = (
    ("report.csv", "report?format=csv", "text/csv"),
    ("report.fhir.json", "report?format=fhir", "application/fhir+json"),
    ("report.html", "report?format=html", "text/html"),
)


def _same_body(media: str, response) -> object:
    """The body, less what differs between two requests (the FHIR Bundle's own id)."""
    if media == "application/fhir+json":
        document = json.loads(response.get_data())
        document.pop("id")
        return document
    return response.get_data(as_text=True)


def _audited(db, response) -> list[tuple]:
    rows = db.scalars(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["X-Request-ID"])
    )
    return [(e.action, e.resource_type, e.resource_id, e.outcome, e.actor_role) for e in rows]


@pytest.mark.parametrize(("typed", "old", "media"), TYPED)
def test_typed_report_operation_is_the_old_forms_body_and_audit(
    client, care, db, monkeypatch, typed, old, media
):
    # One instant for both requests: the bodies say when they were generated.
    instant = datetime.fromisoformat("2026-03-07T12:00:00+00:00")
    monkeypatch.setattr("api.resources.reports.utcnow", lambda: instant)
    for who in ("ch", "ph"):
        new = client.get(f"{care['base']}/{typed}?from=2026-03-01", headers=care[who])
        before = client.get(f"{care['base']}/{old}&from=2026-03-01", headers=care[who])
        assert new.status_code == 200 and new.mimetype == media
        assert new.headers["Cache-Control"] == "no-store"
        assert _same_body(media, new) == _same_body(media, before)
        assert _audited(db, new) == _audited(db, before)
        role = {"ch": "clinician", "ph": "patient"}[who]
        assert _audited(db, new) == [("read", "report", None, "success", role)]


def test_typed_report_operations_give_their_content(client, care):
    csv_form = client.get(f"{care['base']}/report.csv", headers=care["ch"])
    assert _csv(csv_form)[0] == list(CSV_HEADER) and len(_csv(csv_form)) == 13
    assert csv_form.headers["Content-Disposition"].startswith("attachment;")
    fhir = client.get(f"{care['base']}/report.fhir.json", headers=care["ch"])
    assert _validated(json.loads(fhir.get_data()))["Procedure"] == 2
    page = client.get(f"{care['base']}/report.html", headers=care["ch"])
    assert page.get_data(as_text=True).startswith("<!DOCTYPE html>")
    assert "style-src" in page.headers["Content-Security-Policy"]
    # The media type is the path's: an Accept header or format= does not change it.
    asked = client.get(
        f"{care['base']}/report.csv?format=json", headers={**care["ch"], "Accept": "text/html"}
    )
    assert asked.mimetype == "text/csv"
    for typed, _old, _media in TYPED:
        bad = client.get(
            f"{care['base']}/{typed}?from=2026-03-05&to=2026-03-01", headers=care["ph"]
        )
        assert bad.status_code == 422 and bad.mimetype == "application/problem+json"


@pytest.mark.parametrize(("typed", "old", "media"), TYPED)
def test_typed_report_operation_access_rules(app, client, care, typed, old, media):
    other_org = make_staff(app, organisation_id=make_organisation(app))
    others = {
        "other patient": auth(client, register_patient(client)["email"]),
        "unlinked clinician": auth(client, make_staff(app)["email"]),
        "clinician of another organisation": auth(client, other_org["email"]),
    }
    nowhere = f"/api/v1/patients/{uuid.uuid4()}/{typed}"
    for name, headers in others.items():
        hidden = client.get(f"{care['base']}/{typed}", headers=headers)
        absent = client.get(nowhere, headers=headers)
        assert hidden.status_code == 404 and hidden.mimetype == "application/problem+json", name
        problems = [hidden.get_json(), absent.get_json()]
        for problem in problems:
            problem.pop("instance", None)
        assert problems[0] == problems[1], name
        assert client.get(f"{care['base']}/{old}", headers=headers).status_code == 404, name
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    assert client.get(f"{care['base']}/{typed}", headers=admin).status_code == 403
    assert client.get(f"{care['base']}/{typed}").status_code == 401
    assert client.get(f"/api/v1/patients/me/{typed}", headers=care["ph"]).status_code == 200
    assert client.get(f"/api/v1/patients/me/{typed}", headers=care["ch"]).status_code == 404


def test_typed_export_is_the_fhir_export(app, client, care, db):
    new = client.get("/api/v1/me/export.fhir.json", headers=care["ph"])
    before = client.get("/api/v1/me/export?format=fhir", headers=care["ph"])
    assert new.status_code == 200 and new.mimetype == "application/fhir+json"
    assert new.headers["Cache-Control"] == "no-store"
    assert _validated(json.loads(new.get_data()))["Patient"] == 1
    documents = [json.loads(r.get_data()) for r in (new, before)]
    for document in documents:
        del document["id"], document["timestamp"]
    assert documents[0] == documents[1]
    assert (
        _audited(db, new)
        == _audited(db, before)
        == [("export", "export", None, "success", "patient")]
    )
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    assert client.get("/api/v1/me/export.fhir.json", headers=care["ch"]).status_code == 403
    assert client.get("/api/v1/me/export.fhir.json", headers=admin).status_code == 403
    assert client.get("/api/v1/me/export.fhir.json").status_code == 401
