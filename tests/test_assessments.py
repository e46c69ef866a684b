"""Assessments: respondents, scoring on the server, idempotency, crisis block, alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

import models.assessment_writes
from api.config import ConfigError, load_settings
from models import Alert, Assessment, AssessmentVersion, Role
from models.outcomes import DEFAULT_RULESET_VERSION
from tests.conftest import auth, link, make_staff, register_patient

CRISIS_RESOURCES = [
    {"name": "988 Suicide & Crisis Lifeline", "contact": "Call or text 988"},
    {"name": "Emergency services", "contact": "911"},
]


@pytest.fixture
def care(app, client):
    patient = register_patient(client)
    patient_headers = auth(client, patient["email"])
    clinician_headers = auth(client, make_staff(app)["email"])
    link(client, clinician_headers, patient_headers)
    return {
        "patient": patient,
        "patient_headers": patient_headers,
        "clinician_headers": clinician_headers,
        "url": f"/api/v1/patients/{patient['id']}/assessments",
        "me": "/api/v1/patients/me/assessments",
    }


def _at(hours_ago: float = 1, offset: str = "-08:00") -> str:
    tz = datetime.strptime(offset, "%z").tzinfo
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).astimezone(tz).isoformat()


def phq9(*answers: int, item9: int = 0, **overrides):
    """A PHQ-9 body: the first eight answers (padded with 0) and item 9."""
    first = list(answers) + [0] * (8 - len(answers))
    body = {"instrument": "phq9", "answers": [*first, item9], "occurred_at": _at()}
    body.update(overrides)
    return body


def phq9_total(total: int, item9: int = 0, **overrides):
    """A PHQ-9 body with the given total (item 9 counted in it)."""
    rest = total - item9
    first = []
    for _ in range(8):
        first.append(min(3, rest))
        rest -= first[-1]
    assert rest == 0
    return phq9(*first, item9=item9, **overrides)


def _count(db, model, patient_id):
    return db.scalar(
        select(func.count()).select_from(model).where(model.patient_id == uuid.UUID(patient_id))
    )


def _alerts(db, patient_id):
    return db.scalars(
        select(Alert)
        .where(Alert.patient_id == uuid.UUID(patient_id))
        .order_by(Alert.created_at, Alert.rule)
    ).all()


def test_patient_submits_phq9_and_reads_it_back(client, care):
    occurred = "2026-11-26T23:30:00-08:00"
    body = phq9(1, 2, 3, 1, 0, 0, 1, 2, occurred_at=occurred, difficulty=2)
    response = client.post(care["me"], json=body, headers=care["patient_headers"])
    assert response.status_code == 201, response.get_json()
    stored = response.get_json()
    assert stored["total"] == 10 and stored["band"] == "moderate"
    assert stored["difficulty"] == 2 and stored["answers"] == body["answers"]
    assert stored["flags"] == [] and stored["crisis"] is None
    assert stored["occurred_at"] == "2026-11-27T07:30:00+00:00"
    assert (stored["utc_offset"], stored["local_date"]) == ("-08:00", "2026-11-26")
    assert stored["instrument_version"] == "1.0" and stored["scoring_version"] == "1.0"
    assert stored["ruleset_version"] == DEFAULT_RULESET_VERSION
    assert stored["rated_by_id"] is None
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"].endswith(stored["id"])
    again = client.get(f"{care['url']}/{stored['id']}", headers=care["clinician_headers"])
    assert again.status_code == 200 and again.get_json() == stored


def test_qids_is_scored_by_domain_maxima(client, care):
    answers = [0, 3, 1, 2, 2, 3, 0, 0, 1, 1, 2, 0, 1, 2, 1, 3]  # items sum to 22
    body = {"instrument": "qids_sr16", "answers": answers, "occurred_at": _at()}
    stored = client.post(care["me"], json=body, headers=care["patient_headers"]).get_json()
    assert (stored["total"], stored["band"]) == (17, "severe")


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ([0] * 8, "answers"),
        ([0] * 10, "answers"),
        ([], "answers"),
        ([0, 0, 4, 0, 0, 0, 0, 0, 0], "answers.2"),
        ([0, 0, -1, 0, 0, 0, 0, 0, 0], "answers.2"),
        ([0, 0, 2.5, 0, 0, 0, 0, 0, 0], "answers.2"),
        ([0, 0, "2", 0, 0, 0, 0, 0, 0], "answers.2"),
        ([0, 0, True, 0, 0, 0, 0, 0, 0], "answers.2"),
        ([0, 0, None, 0, 0, 0, 0, 0, 0], "answers.2"),
        ("000000000", "answers"),
    ],
)
def test_invalid_answers_are_422_per_item_and_store_nothing(client, db, care, answers, field):
    response = client.post(care["me"], json=phq9(answers=answers), headers=care["patient_headers"])
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.get_json()["errors"]
    assert _count(db, Assessment, care["patient"]["id"]) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"instrument": "hamd17"}, "instrument"),
        ({"instrument": "gad7", "answers": [0] * 7, "difficulty": 1}, "difficulty"),
        ({"difficulty": 4}, "difficulty"),
        ({"difficulty": "1"}, "difficulty"),
        ({"occurred_at": "2026-11-26T23:30:00"}, "occurred_at"),
        ({"total": 3}, "total"),
        ({"phase": "pre"}, "phase"),
        ({"session_id": str(uuid.uuid4())}, "session_id"),
    ],
)
def test_other_invalid_fields_are_422(client, db, care, overrides, field):
    response = client.post(care["me"], json=phq9(**overrides), headers=care["patient_headers"])
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert _count(db, Assessment, care["patient"]["id"]) == 0


def test_difficulty_is_stored_but_not_added(client, care):
    response = client.post(
        care["me"], json=phq9(1, 1, difficulty=3), headers=care["patient_headers"]
    )
    assert response.get_json()["total"] == 2 and response.get_json()["difficulty"] == 3


def test_respondent_rules(app, client, care):
    madrs = {"instrument": "madrs", "answers": [2] * 10, "occurred_at": _at()}
    patient, clinician = care["patient_headers"], care["clinician_headers"]
    # Self-report: the patient only.
    assert client.post(care["me"], json=phq9(), headers=patient).status_code == 201
    assert client.post(care["url"], json=phq9(), headers=clinician).status_code == 403
    # Clinician-rated: a linked clinician only.
    assert client.post(care["me"], json=madrs, headers=patient).status_code == 403
    rated = client.post(care["url"], json=madrs, headers=clinician)
    assert rated.status_code == 201
    assert rated.get_json()["total"] == 20 and rated.get_json()["band"] == "moderate"
    staff = rated.get_json()["rated_by_id"]
    assert staff is not None and staff != care["patient"]["id"]
    # Those who cannot see the patient: 404 as if absent; no token: 401; admin: 403.
    unlinked = auth(client, make_staff(app)["email"])
    assert client.post(care["url"], json=madrs, headers=unlinked).status_code == 404
    assert client.get(care["url"], headers=unlinked).status_code == 404
    other = auth(client, register_patient(client)["email"])
    assert client.post(care["url"], json=phq9(), headers=other).status_code == 404
    assert client.get(care["url"], headers=other).status_code == 404
    assert client.post(care["url"], json=phq9()).status_code == 401
    admin = auth(client, make_staff(app, role=Role.admin)["email"])
    assert client.post(care["url"], json=madrs, headers=admin).status_code == 403


def test_replay_by_id_and_by_key_and_clash(client, db, care):
    headers = care["patient_headers"]
    body = phq9(1, 1, id=str(uuid.uuid4()))
    first = client.post(care["me"], json=body, headers=headers)
    replay = client.post(care["me"], json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.get_json() == first.get_json()
    assert (
        client.post(care["me"], json={**body, "answers": [0] * 9}, headers=headers).status_code
        == 409
    )
    keyed = {**headers, "Idempotency-Key": "phone-7-phq9-3"}
    body2 = phq9(2, 2)
    assert client.post(care["me"], json=body2, headers=keyed).status_code == 201
    assert client.post(care["me"], json=body2, headers=keyed).status_code == 200
    assert client.post(care["me"], json=phq9(3), headers=keyed).status_code == 409
    assert _count(db, Assessment, care["patient"]["id"]) == 2


def _no_safe_wording(response):
    assert "safe" not in response.get_data(as_text=True).lower()


@pytest.mark.parametrize(("item9", "priority"), [(1, "medium"), (2, "high"), (3, "high")])
def test_positive_item9_gives_crisis_block_and_self_harm_alert(client, db, care, item9, priority):
    # Total below 5 ("minimal"): the alert is never dropped for a low total.
    response = client.post(care["me"], json=phq9(item9=item9), headers=care["patient_headers"])
    assert response.status_code == 201
    body = response.get_json()
    assert body["total"] == item9 and body["band"] == "minimal"
    assert body["flags"] == ["self_harm_item_positive"]
    crisis = body["crisis"]
    assert crisis["resources"] == CRISIS_RESOURCES
    assert crisis["monitored_in_real_time"] is False
    assert "988" in crisis["message"] and "not monitored in real time" in crisis["message"]
    _no_safe_wording(response)
    alerts = _alerts(db, care["patient"]["id"])
    assert [(a.rule, a.priority) for a in alerts] == [("self_harm", priority)]
    alert = alerts[0]
    assert (alert.source_type, str(alert.source_id)) == ("assessment", body["id"])
    assert alert.details == {"instrument": "phq9", "item": 9, "value": item9, "total": item9}
    assert alert.ruleset_version == DEFAULT_RULESET_VERSION
    assert alert.acknowledged_at is None


@pytest.mark.parametrize(("item12", "priority"), [(1, "medium"), (2, "high"), (3, "high")])
def test_positive_qids_item12_gives_crisis_block_and_alert(client, db, care, item12, priority):
    answers = [0] * 16
    answers[11] = item12
    body = {"instrument": "qids_sr16", "answers": answers, "occurred_at": _at()}
    response = client.post(care["me"], json=body, headers=care["patient_headers"])
    assert response.status_code == 201
    assert response.get_json()["crisis"]["resources"] == CRISIS_RESOURCES
    alerts = _alerts(db, care["patient"]["id"])
    assert [(a.rule, a.priority, a.details["item"]) for a in alerts] == [
        ("self_harm", priority, 12)
    ]


@pytest.mark.parametrize(
    "body",
    [
        phq9(3, 3, 3, 3, 3, 3, 3, 3, item9=0),  # severe, but item 9 negative
        {"instrument": "gad7", "answers": [3] * 7},
        {"instrument": "qids_sr16", "answers": [3] * 11 + [0] + [3] * 4},
    ],
)
def test_no_crisis_block_without_a_positive_safety_item(client, db, care, body):
    body = {**body, "occurred_at": _at()}
    response = client.post(care["me"], json=body, headers=care["patient_headers"])
    assert response.status_code == 201
    assert response.get_json()["crisis"] is None and response.get_json()["flags"] == []
    _no_safe_wording(response)
    assert all(a.rule != "self_harm" for a in _alerts(db, care["patient"]["id"]))


def test_replay_repeats_the_crisis_block_but_not_the_alert(client, db, care):
    body = phq9(item9=2, id=str(uuid.uuid4()))
    client.post(care["me"], json=body, headers=care["patient_headers"])
    replay = client.post(care["me"], json=body, headers=care["patient_headers"])
    assert replay.status_code == 200 and replay.get_json()["crisis"] is not None
    assert len(_alerts(db, care["patient"]["id"])) == 1
    # Reads carry no crisis block: it answers the submit.
    read = client.get(f"{care['me']}/{body['id']}", headers=care["patient_headers"])
    assert read.get_json()["crisis"] is None
    assert read.get_json()["flags"] == ["self_harm_item_positive"]


def test_crisis_block_follows_configuration(app, client, care, monkeypatch):
    services = app.extensions["moodtrack"]
    configured = services.settings.with_overrides(
        crisis_text="Call 116 123 (Samaritans). Not monitored in real time.",
        crisis_resources=(("Samaritans", "116 123"),),
    )
    monkeypatch.setattr(services, "settings", configured)
    body = client.post(care["me"], json=phq9(item9=1), headers=care["patient_headers"]).get_json()
    assert body["crisis"]["message"].startswith("Call 116 123")
    assert body["crisis"]["resources"] == [{"name": "Samaritans", "contact": "116 123"}]


def _worsening(db, patient_id):
    return [a for a in _alerts(db, patient_id) if a.rule == "worsening"]


def test_worsening_at_plus_five_not_plus_four(client, db, care):
    pid, headers = care["patient"]["id"], care["patient_headers"]
    client.post(care["me"], json=phq9_total(5, occurred_at=_at(72)), headers=headers)
    plus4 = client.post(care["me"], json=phq9_total(9, occurred_at=_at(48)), headers=headers)
    assert plus4.status_code == 201 and _worsening(db, pid) == []
    plus5 = client.post(care["me"], json=phq9_total(14, occurred_at=_at(24)), headers=headers)
    alerts = _worsening(db, pid)
    assert len(alerts) == 1
    alert = alerts[0]
    assert str(alert.source_id) == plus5.get_json()["id"] and alert.priority == "medium"
    assert alert.details["reasons"] == ["increase"]
    assert (alert.details["previous_total"], alert.details["total"]) == (9, 14)


def test_worsening_compares_with_the_previous_by_occurred_at(client, db, care):
    pid, headers = care["patient"]["id"], care["patient_headers"]
    client.post(care["me"], json=phq9_total(2, occurred_at=_at(72)), headers=headers)
    client.post(care["me"], json=phq9_total(10, occurred_at=_at(24)), headers=headers)
    assert len(_worsening(db, pid)) == 1
    # A form answered between them but synced late compares with the older one (2 -> 6: +4).
    client.post(care["me"], json=phq9_total(6, occurred_at=_at(48)), headers=headers)
    assert len(_worsening(db, pid)) == 1


def test_first_severe_total_is_worsening(client, db, care):
    pid, headers = care["patient"]["id"], care["patient_headers"]
    first = client.post(care["me"], json=phq9_total(20, occurred_at=_at(72)), headers=headers)
    alerts = _worsening(db, pid)
    assert [str(a.source_id) for a in alerts] == [first.get_json()["id"]]
    assert alerts[0].details["reasons"] == ["entered_severe"]
    assert alerts[0].details["previous_total"] is None
    # Still severe, +1: no new alert.
    client.post(care["me"], json=phq9_total(21, occurred_at=_at(48)), headers=headers)
    assert len(_worsening(db, pid)) == 1


def test_entering_severe_from_moderately_severe_is_worsening(client, db, care):
    pid, headers = care["patient"]["id"], care["patient_headers"]
    client.post(care["me"], json=phq9_total(19, occurred_at=_at(48)), headers=headers)
    assert _worsening(db, pid) == []
    client.post(care["me"], json=phq9_total(20, occurred_at=_at(24)), headers=headers)
    assert [a.details["reasons"] for a in _worsening(db, pid)] == [["entered_severe"]]


def test_deleted_phq9_is_not_the_previous_one(client, db, care):
    pid, headers = care["patient"]["id"], care["patient_headers"]
    client.post(care["me"], json=phq9_total(5, occurred_at=_at(72)), headers=headers)
    low = client.post(care["me"], json=phq9_total(8, occurred_at=_at(48)), headers=headers)
    client.delete(f"{care['me']}/{low.get_json()['id']}", headers={**headers, "If-Match": '"1"'})
    client.post(care["me"], json=phq9_total(10, occurred_at=_at(24)), headers=headers)
    assert [a.details["previous_total"] for a in _worsening(db, pid)] == [5]


def test_worsening_threshold_is_configurable(app, client, db, care, monkeypatch):
    services = app.extensions["moodtrack"]
    rules = services.settings.rules.with_overrides(worsening_points=4)
    monkeypatch.setattr(services, "settings", services.settings.with_overrides(rules=rules))
    pid, headers = care["patient"]["id"], care["patient_headers"]
    client.post(care["me"], json=phq9_total(5, occurred_at=_at(48)), headers=headers)
    stored = client.post(care["me"], json=phq9_total(9, occurred_at=_at(24)), headers=headers)
    alerts = _worsening(db, pid)
    assert len(alerts) == 1 and alerts[0].details["threshold_points"] == 4
    assert alerts[0].ruleset_version == rules.version != DEFAULT_RULESET_VERSION
    assert stored.get_json()["ruleset_version"] == rules.version


def test_self_harm_and_worsening_together(client, db, care):
    client.post(care["me"], json=phq9_total(21, item9=3), headers=care["patient_headers"])
    rules = sorted((a.rule, a.priority) for a in _alerts(db, care["patient"]["id"]))
    assert rules == [("self_harm", "high"), ("worsening", "medium")]


def test_alert_failure_stores_nothing_and_answers_500(client, db, care, monkeypatch):
    def broken(**_kwargs):
        raise RuntimeError("alert store down")

    monkeypatch.setattr(models.assessment_writes, "after_assessment_stored", broken)
    body = phq9(2, 2, item9=2, id=str(uuid.uuid4()))
    response = client.post(care["me"], json=body, headers=care["patient_headers"])
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert set(problem) <= {"type", "title", "status", "detail", "instance"}
    text = response.get_data(as_text=True)
    assert body["id"] not in text and "answers" not in text and "alert store" not in text
    assert _count(db, Assessment, care["patient"]["id"]) == 0
    assert _count(db, Alert, care["patient"]["id"]) == 0


def test_list_newest_first_with_filter_and_paging(client, care):
    headers = care["patient_headers"]
    for hours, total in ((5, 1), (4, 2), (3, 3)):
        client.post(care["me"], json=phq9_total(total, occurred_at=_at(hours)), headers=headers)
    gad = {"instrument": "gad7", "answers": [1] * 7, "occurred_at": _at(1)}
    client.post(care["me"], json=gad, headers=headers)
    listed = client.get(care["url"], headers=care["clinician_headers"]).get_json()
    assert [i["instrument"] for i in listed["items"]] == ["gad7", "phq9", "phq9", "phq9"]
    page = client.get(f"{care['me']}?instrument=phq9&limit=2", headers=headers).get_json()
    assert [i["total"] for i in page["items"]] == [3, 2] and page["next_cursor"]
    rest = client.get(
        f"{care['me']}?instrument=phq9&limit=2&cursor={page['next_cursor']}", headers=headers
    ).get_json()
    assert [i["total"] for i in rest["items"]] == [1] and rest["next_cursor"] is None
    assert client.get(f"{care['me']}?instrument=x", headers=headers).status_code == 422


def test_delete_needs_if_match_keeps_history_and_alerts(client, db, care):
    headers = care["patient_headers"]
    created = client.post(care["me"], json=phq9(item9=1), headers=headers).get_json()
    url = f"{care['me']}/{created['id']}"
    assert client.delete(url, headers=headers).status_code == 428
    assert client.delete(url, headers={**headers, "If-Match": '"9"'}).status_code == 412
    clinician_url = f"{care['url']}/{created['id']}"
    forbidden = client.delete(
        clinician_url, headers={**care["clinician_headers"], "If-Match": '"1"'}
    )
    assert forbidden.status_code == 403
    assert client.delete(url, headers={**headers, "If-Match": '"1"'}).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    history = db.scalars(
        select(AssessmentVersion).where(AssessmentVersion.assessment_id == uuid.UUID(created["id"]))
    ).all()
    assert [(h.version, h.change) for h in history] == [(1, "delete")]
    assert history[0].snapshot["answers"] == created["answers"]
    assert str(history[0].changed_by_id) == care["patient"]["id"]
    assert len(_alerts(db, care["patient"]["id"])) == 1


def test_clinician_deletes_a_clinician_rated_form(client, care):
    madrs = {"instrument": "madrs", "answers": [1] * 10, "occurred_at": _at()}
    created = client.post(care["url"], json=madrs, headers=care["clinician_headers"]).get_json()
    url = f"{care['url']}/{created['id']}"
    assert (
        client.delete(url, headers={**care["patient_headers"], "If-Match": '"1"'}).status_code
        == 403
    )
    assert (
        client.delete(url, headers={**care["clinician_headers"], "If-Match": '"1"'}).status_code
        == 204
    )


def test_bad_ids_are_404(client, care):
    assert (
        client.get(f"{care['me']}/not-a-uuid", headers=care["patient_headers"]).status_code == 404
    )
    assert (
        client.get(f"{care['me']}/{uuid.uuid4()}", headers=care["patient_headers"]).status_code
        == 404
    )


def test_rule_settings_from_the_environment(tmp_path):
    base = {"MOODTRACK_INSTANCE_PATH": str(tmp_path)}
    default = load_settings(base)
    assert default.rules.worsening_points == 5 and default.rules.version == DEFAULT_RULESET_VERSION
    assert default.crisis_resources[0] == ("988 Suicide & Crisis Lifeline", "Call or text 988")
    tuned = load_settings(
        {
            **base,
            "MOODTRACK_WORSENING_POINTS": "6",
            "MOODTRACK_POST_SESSION_DROP_POINTS": "2",
            "MOODTRACK_CRISIS_RESOURCES": '[{"name": "Samaritans", "contact": "116 123"}]',
        }
    )
    assert (tuned.rules.worsening_points, tuned.rules.post_session_drop_points) == (6, 2)
    assert tuned.rules.version.startswith(DEFAULT_RULESET_VERSION + "+")
    assert tuned.crisis_resources == (("Samaritans", "116 123"),)
    for name, value in (
        ("MOODTRACK_WORSENING_POINTS", "0"),
        ("MOODTRACK_WORSENING_POINTS", "five"),
        ("MOODTRACK_CRISIS_RESOURCES", "[]"),
        ("MOODTRACK_CRISIS_RESOURCES", '[{"name": "x"}]'),
        ("MOODTRACK_CRISIS_RESOURCES", "not json"),
    ):
        with pytest.raises(ConfigError):
            load_settings({**base, name: value})
