"""The questionnaire catalogue and its scoring: bands, domains, ranges, licences, codes."""

from __future__ import annotations

import pytest

from models.errors import NotFound, RuleViolation
from models.instruments import (
    CATALOGUE,
    GAD7,
    MADRS,
    PHQ9,
    QIDS_SR16,
    SELF_HARM_FLAG,
    Instrument,
    band_of,
    get_instrument,
    score,
)
from tests.conftest import auth, register_patient


def answers_for(instrument: Instrument, total: int) -> list[int]:
    """A valid form whose total is ``total``: fill each scoring group's first item."""
    answers = [0] * instrument.item_count
    remaining = total
    for group in instrument.scoring_groups:
        first = group[0]
        value = min(remaining, instrument.items[first - 1].high)
        answers[first - 1] = value
        remaining -= value
    assert remaining == 0, "total out of range"
    return answers


# Every edge of every band, from clinical.md: (instrument, total, band code).
BAND_EDGES = [
    (PHQ9, 0, "minimal"),
    (PHQ9, 4, "minimal"),
    (PHQ9, 5, "mild"),
    (PHQ9, 9, "mild"),
    (PHQ9, 10, "moderate"),
    (PHQ9, 14, "moderate"),
    (PHQ9, 15, "moderately_severe"),
    (PHQ9, 19, "moderately_severe"),
    (PHQ9, 20, "severe"),
    (PHQ9, 27, "severe"),
    (GAD7, 0, "minimal"),
    (GAD7, 4, "minimal"),
    (GAD7, 5, "mild"),
    (GAD7, 9, "mild"),
    (GAD7, 10, "moderate"),
    (GAD7, 14, "moderate"),
    (GAD7, 15, "severe"),
    (GAD7, 21, "severe"),
    (QIDS_SR16, 0, "none"),
    (QIDS_SR16, 5, "none"),
    (QIDS_SR16, 6, "mild"),
    (QIDS_SR16, 10, "mild"),
    (QIDS_SR16, 11, "moderate"),
    (QIDS_SR16, 15, "moderate"),
    (QIDS_SR16, 16, "severe"),
    (QIDS_SR16, 20, "severe"),
    (QIDS_SR16, 21, "very_severe"),
    (QIDS_SR16, 27, "very_severe"),
    (MADRS, 0, "normal"),
    (MADRS, 6, "normal"),
    (MADRS, 7, "mild"),
    (MADRS, 19, "mild"),
    (MADRS, 20, "moderate"),
    (MADRS, 34, "moderate"),
    (MADRS, 35, "severe"),
    (MADRS, 60, "severe"),
]


@pytest.mark.parametrize(
    ("instrument", "total", "band"), BAND_EDGES, ids=[f"{i.code}-{t}" for i, t, _ in BAND_EDGES]
)
def test_every_band_edge(instrument, total, band):
    result = score(instrument, answers_for(instrument, total))
    assert result.total == total
    assert result.band is not None and result.band.code == band
    assert band_of(instrument.code, total).code == band


def test_bands_cover_every_total_without_gaps_or_overlaps():
    for instrument in CATALOGUE.values():
        if not instrument.bands:
            continue
        covered = [t for b in instrument.bands for t in range(b.low, b.high + 1)]
        assert covered == list(range(instrument.total_min, instrument.total_max + 1))


def test_cadss_has_no_bands():
    result = score(CATALOGUE["cadss"], [4] * 23)
    assert (result.total, result.band) == (92, None)
    assert band_of("cadss", 10) is None


def test_qids_total_is_the_sum_of_domain_maxima_never_of_items():
    answers = [0, 3, 1, 2, 2, 3, 0, 0, 1, 1, 2, 0, 1, 2, 1, 3]
    # sleep max(0,3,1,2)=3, sad 2, appetite/weight max(3,0,0,1)=3, concentration 1,
    # self-view 2, death/suicide 0, interest 1, energy 2, psychomotor max(1,3)=3 -> 17.
    assert sum(answers) == 22
    result = score(QIDS_SR16, answers)
    assert result.total == 17 and result.band.code == "severe"
    assert result.flags == () and result.safety_item is None
    assert score(QIDS_SR16, [3] * 16).total == 27


def test_totals_ranges_and_counts():
    expected = {
        "phq9": (9, 3, 27, "patient"),
        "gad7": (7, 3, 21, "patient"),
        "qids_sr16": (16, 3, 27, "patient"),
        "madrs": (10, 6, 60, "clinician"),
        "cadss": (23, 4, 92, "clinician"),
    }
    assert set(CATALOGUE) == set(expected)
    for code, (count, high, total_max, respondent) in expected.items():
        instrument = CATALOGUE[code]
        assert instrument.item_count == count
        assert {(i.low, i.high) for i in instrument.items} == {(0, high)}
        assert (instrument.total_min, instrument.total_max) == (0, total_max)
        assert instrument.respondent == respondent
        assert instrument.direction == "down"
        assert score(instrument, [high] * count).total == total_max


@pytest.mark.parametrize("count", [0, 8, 10])
def test_wrong_item_count_is_refused(count):
    with pytest.raises(RuleViolation) as caught:
        score(PHQ9, [0] * count)
    assert list(caught.value.errors) == ["answers"]


@pytest.mark.parametrize("bad", [4, -1, 2.5, "2", True, None])
def test_each_answer_must_be_a_strict_integer_in_range(bad):
    answers = [0] * 9
    answers[3] = bad
    with pytest.raises(RuleViolation) as caught:
        score(PHQ9, answers)
    assert list(caught.value.errors) == ["answers.3"]


def test_madrs_range_is_zero_to_six():
    assert score(MADRS, [6] * 10).total == 60
    with pytest.raises(RuleViolation):
        score(MADRS, [7] + [0] * 9)


def test_difficulty_is_phq9_only_and_never_in_the_total():
    assert score(PHQ9, [1] * 9, difficulty=3).total == 9
    with pytest.raises(RuleViolation) as caught:
        score(GAD7, [0] * 7, difficulty=1)
    assert list(caught.value.errors) == ["difficulty"]
    for bad in (4, -1, True, 1.5):
        with pytest.raises(RuleViolation):
            score(PHQ9, [0] * 9, difficulty=bad)


@pytest.mark.parametrize("value", [1, 2, 3])
def test_safety_items(value):
    phq = [0] * 9
    phq[8] = value
    result = score(PHQ9, phq)
    assert (result.safety_item, result.safety_value) == (9, value)
    assert result.flags == (SELF_HARM_FLAG,)
    qids = [0] * 16
    qids[11] = value
    result = score(QIDS_SR16, qids)
    assert (result.safety_item, result.safety_value) == (12, value)


def test_a_negative_safety_item_flags_nothing():
    result = score(PHQ9, [3] * 8 + [0])
    assert result.flags == () and result.safety_item is None and result.safety_value is None


def test_unknown_instrument():
    with pytest.raises(NotFound):
        get_instrument("hamd17")


def test_licences_are_respected():
    for code in ("madrs", "cadss"):
        instrument = CATALOGUE[code]
        assert all(item.text is None for item in instrument.items)
        assert instrument.answer_options == () and instrument.instructions is None
    assert all(item.text is None for item in QIDS_SR16.items)
    assert {item.domain for item in QIDS_SR16.items} >= {
        "Sleep",
        "Psychomotor slowing or restlessness",
    }
    assert all(item.text for item in PHQ9.items) and all(item.text for item in GAD7.items)
    for instrument in (PHQ9, GAD7):
        assert "Pfizer" in instrument.copyright
        assert [(o.value, o.label) for o in instrument.answer_options] == [
            (0, "Not at all"),
            (1, "Several days"),
            (2, "More than half the days"),
            (3, "Nearly every day"),
        ]


def test_loinc_codes_only_where_verified():
    assert (PHQ9.loinc_panel, PHQ9.loinc_total) == ("44249-1", "44261-6")
    assert [i.loinc_code for i in PHQ9.items] == [
        "44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
        "44258-2", "44252-5", "44253-3", "44260-8",
    ]  # fmt: skip
    assert PHQ9.difficulty_item.loinc_code == "69722-7"
    assert [o.loinc_code for o in PHQ9.answer_options] == [
        "LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9",
    ]  # fmt: skip
    assert (GAD7.loinc_panel, GAD7.loinc_total) == ("69737-5", "70274-6")
    assert all(i.loinc_code is None for i in GAD7.items)
    for code in ("qids_sr16", "madrs", "cadss"):
        instrument = CATALOGUE[code]
        assert instrument.loinc_panel is None and instrument.loinc_total is None
        assert all(i.loinc_code is None for i in instrument.items)


# --- the HTTP catalogue ---------------------------------------------------------------


@pytest.fixture
def headers(client):
    patient = register_patient(client)
    return auth(client, patient["email"])


def test_catalogue_needs_a_token(client):
    assert client.get("/api/v1/instruments").status_code == 401
    assert client.get("/api/v1/instruments/phq9").status_code == 401


def test_catalogue_lists_every_instrument(client, headers):
    response = client.get("/api/v1/instruments", headers=headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    items = {i["code"]: i for i in response.get_json()["items"]}
    assert {c: i["item_count"] for c, i in items.items()} == {
        "phq9": 9,
        "gad7": 7,
        "qids_sr16": 16,
        "madrs": 10,
        "cadss": 23,
    }
    assert items["madrs"]["respondent"] == "clinician" and items["phq9"]["respondent"] == "patient"
    assert all(item["text"] is None for item in items["madrs"]["items"] + items["cadss"]["items"])


def test_one_instrument(client, headers):
    body = client.get("/api/v1/instruments/phq9", headers=headers).get_json()
    assert body["loinc_panel"] == "44249-1" and body["loinc_total"] == "44261-6"
    assert body["items"][8]["loinc_code"] == "44260-8" and body["items"][8]["safety_item"]
    assert not any(item["safety_item"] for item in body["items"][:8])
    assert body["difficulty_item"]["number"] == 10
    assert body["difficulty_item"]["loinc_code"] == "69722-7"
    assert body["bands"][-1] == {"code": "severe", "label": "Severe", "min": 20, "max": 27}
    assert body["direction"] == "down" and body["recall_period"] == "2 weeks"
    qids = client.get("/api/v1/instruments/qids_sr16", headers=headers).get_json()
    assert qids["items"][11]["safety_item"] and qids["recall_period"] == "7 days"
    assert client.get("/api/v1/instruments/nope", headers=headers).status_code == 404
