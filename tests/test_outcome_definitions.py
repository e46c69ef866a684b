"""Outcome definitions set at start (issue 11 §2): every threshold of clinical.md §3, the
version recorded with every label and alert, and the definitions readable by clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from api.config import ConfigError, load_settings
from models.alerts import Alert
from models.analytics import summary
from models.outcomes import DEFAULT_RULESET_VERSION, RuleSet
from tests import factories as f
from tests.conftest import auth, link, make_staff, register_patient

GOOD_KEY = "k=" + "s" * 40
NOW = datetime.now(UTC).replace(microsecond=0)


def _settings(tmp_path, **env):
    return load_settings(
        {"MOODTRACK_SIGNING_KEYS": GOOD_KEY, "MOODTRACK_INSTANCE_PATH": str(tmp_path), **env}
    )


def test_every_threshold_is_settable_and_the_version_says_so(tmp_path):
    rules = {
        "response_fraction": 0.6,
        "remission": {"madrs": ["<=", 12]},
        "reliable_improvement_drop": {"gad7": 5},
        "minimal_important_change": {"phq9": 4},
        "relapse_min": {"qids_sr16": 12},
        "worsening_points": 6,
        "post_session_drop_points": 2,
        "post_session_window_hours": 24,
    }
    settings = _settings(tmp_path, MOODTRACK_RULES=json.dumps(rules))
    got = settings.rules.describe()
    assert got["response"] == {"current_at_most_fraction_of_baseline": 0.6}
    # Per-instrument rules change only the instrument named.
    assert got["remission"]["madrs"] == {"operator": "<=", "cutoff": 12}
    assert got["remission"]["phq9"] == {"operator": "<", "cutoff": 5}
    assert got["reliable_improvement"] == {
        "phq9": {"drop_at_least": 6},
        "gad7": {"drop_at_least": 5},
    }
    assert got["minimal_important_change"] == {"phq9": {"improvement_at_least": 4}}
    assert got["relapse"] == {"qids_sr16": {"at_least": 12, "after": "remission"}}
    assert got["alerts"] == {
        "worsening_points": 6,
        "post_session_drop_points": 2,
        "post_session_window_hours": 24,
        "self_harm_high_from": 2,  # clinical.md §6, not settable
    }
    assert got["version"].startswith(f"{DEFAULT_RULESET_VERSION}+")
    named = _settings(tmp_path, MOODTRACK_RULES=json.dumps({**rules, "version": "esk-2026"}))
    assert named.rules.version.startswith("esk-2026+")
    # A name alone, for the default thresholds, is kept as it is.
    assert _settings(tmp_path, MOODTRACK_RULES='{"version": "v7"}').rules.version == "v7"


def test_a_version_cannot_claim_the_defaults_for_other_thresholds(tmp_path):
    rules = {"version": DEFAULT_RULESET_VERSION, "worsening_points": 27}
    settings = _settings(tmp_path, MOODTRACK_RULES=json.dumps(rules))
    assert settings.rules.version != DEFAULT_RULESET_VERSION
    assert settings.rules.version.startswith(f"{DEFAULT_RULESET_VERSION}+")


def test_rules_from_a_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"remission": {"madrs": ["<=", 12]}}))
    settings = _settings(tmp_path, MOODTRACK_RULES=f"@{path}")
    assert settings.rules.remission["madrs"] == ("<=", 12)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "JSON object"),
        ("[1, 2]", "JSON object"),
        ('{"remision": {}}', "unknown rule settings"),
        ('{"remission": {"mood": ["<", 5]}}', "not an instrument"),
        ('{"remission": {"phq9": ["=", 5]}}', "remission of phq9"),
        ('{"remission": {"phq9": ["<", 99]}}', "remission of phq9"),
        ('{"response_fraction": 1.5}', "between 0 and 1"),
        ('{"worsening_points": 0}', "at least 1"),
        ('{"relapse_min": {"qids_sr16": 2.5}}', "whole number"),
        # The self-harm grading is clinical.md §6: no deployment may make every item medium.
        ('{"self_harm_high_from": 9}', "unknown rule settings"),
        ("@/no/such/file.json", "@path"),
    ],
)
def test_bad_rules_are_refused_at_start(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, MOODTRACK_RULES=value)


def test_definitions_are_readable_by_any_signed_in_user(app, client, monkeypatch):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    default = client.get("/api/v1/outcome-definitions", headers=headers)
    assert default.status_code == 200
    assert default.get_json()["version"] == DEFAULT_RULESET_VERSION
    assert default.get_json()["remission"]["madrs"] == {"operator": "<=", "cutoff": 10}
    services = app.extensions["moodtrack"]
    esketamine = RuleSet.from_mapping({"remission": {"madrs": ["<=", 12]}, "version": "esk"})
    assert esketamine.version.startswith("esk+")
    monkeypatch.setattr(services, "settings", services.settings.with_overrides(rules=esketamine))
    body = client.get("/api/v1/outcome-definitions", headers=headers).get_json()
    assert body["version"] == esketamine.version and body["remission"]["madrs"]["cutoff"] == 12
    assert client.get("/api/v1/outcome-definitions").status_code == 401


def test_labels_and_alerts_carry_the_version_that_made_them(app, client, db, monkeypatch):
    services = app.extensions["moodtrack"]
    rules = RuleSet.from_mapping({"version": "clinic-7"})
    monkeypatch.setattr(services, "settings", services.settings.with_overrides(rules=rules))
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    form = {"instrument": "phq9", "answers": [3] * 7 + [0, 1], "occurred_at": NOW.isoformat()}
    assert client.post("/api/v1/patients/me/assessments", json=form, headers=ph).status_code == 201
    alerts = db.scalars(select(Alert)).all()
    assert {a.ruleset_version for a in alerts} == {"clinic-7"} and len(alerts) == 2
    base = f"/api/v1/patients/{patient['id']}"
    trend = client.get(f"{base}/trends?metric=phq9", headers=ch).get_json()
    assert trend["summary"]["ruleset_version"] == "clinic-7"
    course = client.get(f"{base}/course", headers=ch).get_json()
    assert course["phq9"]["ruleset_version"] == "clinic-7"
    cohort = client.get("/api/v1/patients", headers=ch).get_json()
    assert cohort["ruleset_version"] == "clinic-7"


def _qids(db, who, day: int, total: int):
    form = f.phq9(db, who, f"2026-0{1 + day // 28}-{1 + day % 28:02d}T09:00:00+00:00", total)
    form.instrument = "qids_sr16"
    db.flush()
    return form


@pytest.mark.parametrize(
    ("totals", "relapse"),
    [
        ((14, 5, 12), True),  # remission (<= 5), then >= 11: STAR*D relapse
        ((14, 5, 10), False),  # remitted, not back to 11
        ((14, 8, 12), None),  # never in remission: nothing to relapse from
        ((4, 11), True),  # in remission from the first form on
        ((14, 11, 5), False),  # >= 11 only before the remission
    ],
)
def test_relapse_is_the_star_d_definition(db, totals, relapse):
    who = f.patient(db)
    for day, total in enumerate(totals):
        _qids(db, who, day * 7, total)
    got = summary(db=db, patient_id=who.id, metric="qids_sr16", rules=RuleSet())
    assert got.relapse is relapse
    assert summary(db=db, patient_id=who.id, metric="phq9", rules=RuleSet()).relapse is None


def test_relapse_level_is_configurable(db):
    who = f.patient(db)
    for day, total in enumerate((14, 5, 12)):
        _qids(db, who, day * 7, total)
    strict = RuleSet.from_mapping({"relapse_min": {"qids_sr16": 13}})
    assert summary(db=db, patient_id=who.id, metric="qids_sr16", rules=RuleSet()).relapse is True
    assert summary(db=db, patient_id=who.id, metric="qids_sr16", rules=strict).relapse is False


def test_minimal_important_change_for_phq9(db):
    who = f.patient(db)
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    f.phq9(db, who, start, 15)
    f.phq9(db, who, start + timedelta(days=20), 10)  # improvement 5
    got = summary(db=db, patient_id=who.id, metric="phq9", rules=RuleSet())
    assert (got.improvement, got.minimal_important_change) == (5, True)
    stricter = RuleSet.from_mapping({"minimal_important_change": {"phq9": 6}})
    assert (
        summary(db=db, patient_id=who.id, metric="phq9", rules=stricter).minimal_important_change
        is False
    )
    assert (
        summary(db=db, patient_id=who.id, metric="gad7", rules=RuleSet()).minimal_important_change
        is None
    )
