"""analytics.md worked by hand: each expected figure below is computed in the comment."""

from __future__ import annotations

import json
from datetime import date

import pytest

from models.analytics import (
    baseline,
    current,
    effects,
    rolling7,
    series,
    slope_per_week,
    summary,
)
from models.analytics.metrics import improvement_of
from models.outcomes import RuleSet
from tests import factories as f

RULES = RuleSet()


def test_local_date_follows_the_offset_sent_around_midnight(db):
    p = f.patient(db)
    f.mood(db, p, "2026-03-01T23:30:00-08:00", 4)  # 07:30 UTC on 2 March: local 1 March
    f.mood(db, p, "2026-03-02T00:30:00+13:00", 8)  # 11:30 UTC on 1 March: local 2 March
    f.mood(db, p, "2026-03-01T08:00:00+00:00", 6)
    days = series(db=db, patient_id=p.id, metric="mood", bucket="day")
    # 1 March: (4 + 6) / 2 = 5, n 2; 2 March: 8, n 1.
    assert [(b.start, b.mean, b.n, b.min, b.max) for b in days] == [
        (date(2026, 3, 1), 5.0, 2, 4.0, 6.0),
        (date(2026, 3, 2), 8.0, 1, 8.0, 8.0),
    ]


def test_daylight_saving_change_keeps_local_days(db):
    p = f.patient(db, "America/New_York")
    # US clocks went forward on 8 March 2026: -05:00 before, -04:00 after.
    f.mood(db, p, "2026-03-07T23:59:00-05:00", 2)
    f.mood(db, p, "2026-03-08T00:01:00-05:00", 4)
    f.mood(db, p, "2026-03-08T23:59:00-04:00", 6)  # 03:59 UTC on 9 March
    f.mood(db, p, "2026-03-09T00:01:00-04:00", 8)
    days = series(db=db, patient_id=p.id, metric="mood", bucket="day")
    assert [(b.start.day, b.mean) for b in days] == [(7, 2.0), (8, 5.0), (9, 8.0)]


def test_week_and_month_buckets_and_inclusive_range(db):
    p = f.patient(db)
    # Sun 1 Mar, Mon 2 Mar, Sun 8 Mar, Mon 9 Mar, Tue 31 Mar, Wed 1 Apr (2026).
    for day, value in (("01", 1), ("02", 2), ("08", 3), ("09", 4), ("31", 5)):
        f.mood(db, p, f"2026-03-{day}T12:00:00+00:00", value)
    f.mood(db, p, "2026-04-01T12:00:00+00:00", 6)
    weeks = series(db=db, patient_id=p.id, metric="mood", bucket="week")
    # ISO weeks labelled by Monday: 23 Feb {1}, 2 Mar {2, 3}, 9 Mar {4}, 30 Mar {5, 6}.
    assert [(b.start, b.mean, b.n) for b in weeks] == [
        (date(2026, 2, 23), 1.0, 1),
        (date(2026, 3, 2), 2.5, 2),
        (date(2026, 3, 9), 4.0, 1),
        (date(2026, 3, 30), 5.5, 2),
    ]
    months = series(db=db, patient_id=p.id, metric="mood", bucket="month")
    assert [(b.start, b.mean, b.n) for b in months] == [
        (date(2026, 3, 1), 3.0, 5),
        (date(2026, 4, 1), 6.0, 1),
    ]
    ranged = series(
        db=db,
        patient_id=p.id,
        metric="mood",
        bucket="day",
        date_from=date(2026, 3, 2),
        date_to=date(2026, 3, 8),
    )
    assert [b.start.day for b in ranged] == [2, 8]


def test_rolling7_uses_only_days_with_data_in_the_window(db):
    p = f.patient(db)
    for day, value in ((1, 2), (2, 4), (7, 6), (9, 10)):
        f.mood(db, p, f"2026-03-{day:02d}T12:00:00+00:00", value)
    days = series(db=db, patient_id=p.id, metric="mood", bucket="day")
    # 1: 2; 2: (2+4)/2 = 3; 7: (2+4+6)/3 = 4; 9: days 3..9 -> (6+10)/2 = 8.
    assert [(point.date, point.mean) for point in rolling7(days)] == [
        (date(2026, 3, 1), 2.0),
        (date(2026, 3, 2), 3.0),
        (date(2026, 3, 7), 4.0),
        (date(2026, 3, 9), 8.0),
    ]


def test_slope_per_week(db):
    p = f.patient(db)
    assert slope_per_week([]) is None
    f.mood(db, p, "2026-03-01T12:00:00+00:00", 2)
    assert slope_per_week(series(db=db, patient_id=p.id, metric="mood", bucket="day")) is None
    f.mood(db, p, "2026-03-02T12:00:00+00:00", 3)
    f.mood(db, p, "2026-03-05T12:00:00+00:00", 6)
    # x = 0, 1, 4 (days), y = 2, 3, 6: y = 2 + x exactly, slope 1 a day = 7 a week.
    days = series(db=db, patient_id=p.id, metric="mood", bucket="day")
    assert slope_per_week(days) == pytest.approx(7.0)


def test_baseline_is_the_fortnight_before_the_first_completed_session(db):
    p = f.patient(db)
    f.phq9(db, p, "2026-02-10T09:00:00+00:00", 26)  # 19 days before: outside the window
    f.phq9(db, p, "2026-02-16T09:00:00+00:00", 20)  # 13 days before: inside
    f.phq9(db, p, "2026-02-28T09:00:00+00:00", 16)
    f.session(db, p, "2026-02-20T10:00:00+00:00", status="cancelled")  # never counts
    f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.phq9(db, p, "2026-03-01T09:59:59+00:00", 12)  # just before S1: inside
    f.phq9(db, p, "2026-03-01T10:00:00+00:00", 0)  # at S1: not before it
    # (20 + 16 + 12) / 3 = 16.
    assert baseline(db=db, patient_id=p.id, metric="phq9") == 16.0


def test_baseline_falls_back_to_the_last_measurement_before_s1(db):
    p = f.patient(db)
    f.phq9(db, p, "2026-01-01T09:00:00+00:00", 21)
    f.phq9(db, p, "2026-01-20T09:00:00+00:00", 19)  # last before S1, 40 days earlier
    f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.phq9(db, p, "2026-03-02T09:00:00+00:00", 9)
    assert baseline(db=db, patient_id=p.id, metric="phq9") == 19.0


def test_baseline_without_a_completed_session_is_the_first_fortnight(db):
    p = f.patient(db)
    f.session(db, p, "2026-03-20T10:00:00+00:00", status="scheduled")  # does not count
    f.mood(db, p, "2026-03-01T08:00:00+00:00", 2)
    f.mood(db, p, "2026-03-14T07:59:59+00:00", 4)  # inside [first, first + 14 d)
    f.mood(db, p, "2026-03-15T08:00:00+00:00", 9)  # outside
    assert baseline(db=db, patient_id=p.id, metric="mood") == 3.0
    assert baseline(db=db, patient_id=p.id, metric="phq9") is None


def test_current_is_the_week_up_to_the_latest(db):
    p = f.patient(db)
    f.mood(db, p, "2026-03-01T12:00:00+00:00", 1)  # exactly L - 7 d: excluded
    f.mood(db, p, "2026-03-04T12:00:00+00:00", 5)
    f.mood(db, p, "2026-03-08T12:00:00+00:00", 7)  # L
    now = current(db=db, patient_id=p.id, metric="mood")
    assert (now.value, now.latest_value) == (6.0, 7.0)
    within = current(db=db, patient_id=p.id, metric="mood", date_to=date(2026, 3, 4))
    # L becomes 4 March: (1 + 5) / 2 = 3.
    assert within.value == 3.0


def test_summary_labels_for_phq9(db):
    p = f.patient(db)
    f.phq9(db, p, "2026-02-20T09:00:00+00:00", 18)
    f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.phq9(db, p, "2026-03-20T09:00:00+00:00", 10)
    f.phq9(db, p, "2026-03-25T09:00:00+00:00", 6)
    s = summary(db=db, patient_id=p.id, metric="phq9", rules=RULES)
    # baseline 18; current (10 + 6) / 2 = 8; change -10; percent -55.6; improvement +10.
    assert (s.baseline, s.current, s.change) == (18.0, 8.0, -10.0)
    assert s.percent_change == pytest.approx(-55.5556, abs=1e-3)
    assert s.improvement == 10.0
    assert s.response is True  # 8 <= 9
    assert s.remission is False  # 8 is not < 5
    assert s.reliable_improvement is True  # drop 10 >= 6
    assert s.band == "mild"  # the latest single value, 6


def test_remission_on_a_fractional_mean_and_null_labels(db):
    p = f.patient(db)
    f.phq9(db, p, "2026-03-01T09:00:00+00:00", 0)
    f.phq9(db, p, "2026-03-20T09:00:00+00:00", 4)
    f.phq9(db, p, "2026-03-21T09:00:00+00:00", 5)
    s = summary(db=db, patient_id=p.id, metric="phq9", rules=RULES)
    # baseline: first fortnight = 0; current (4 + 5) / 2 = 4.5 < 5: remission.
    assert s.remission is True
    assert s.percent_change is None and s.response is None  # baseline 0
    empty = summary(db=db, patient_id=p.id, metric="gad7", rules=RULES)
    assert (empty.baseline, empty.current, empty.response, empty.remission, empty.band) == (
        None,
        None,
        None,
        None,
        None,
    )
    m = summary(db=db, patient_id=p.id, metric="mood", rules=RULES)
    assert m.response is None and m.remission is None and m.reliable_improvement is None


def _effect(db, p, session_obj, metric="mood"):
    return next(
        e for e in effects(db=db, patient_id=p.id, metric=metric) if e.session_id == session_obj.id
    )


def test_session_effect_windows_deltas_and_relapse(db):
    p = f.patient(db)
    s = f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.mood(db, p, "2026-03-01T09:00:00+00:00", 3, session_id=s.id, phase="pre")
    f.mood(db, p, "2026-03-01T08:00:00+00:00", 5, session_id=s.id, phase="pre")  # pre = 4
    f.mood(db, p, "2026-03-01T08:30:00+00:00", 9)  # unlinked: ignored, linked pre exists
    f.mood(db, p, "2026-03-01T14:00:00+00:00", 8)  # s + 4 h: acute (inclusive end)
    f.mood(db, p, "2026-03-01T22:00:00+00:00", 7)  # s + 12 h: not day1 (exclusive start)
    f.mood(db, p, "2026-03-02T10:00:00+00:00", 6)  # s + 24 h: day1
    f.mood(db, p, "2026-03-04T10:00:00+00:00", 5)  # s + 72 h: day3
    f.mood(db, p, "2026-03-07T10:00:00+00:00", 4)  # s + 6 d: day7 is (s + 6 d, ...]: out
    f.mood(db, p, "2026-03-08T10:00:00+00:00", 4)  # s + 7 d: day7
    e = _effect(db, p, s)
    assert (e.pre, e.pre_source) == (4.0, "linked")
    w = {x.name: x for x in e.windows}
    assert (w["acute"].value, w["acute"].delta, w["acute"].improvement) == (8.0, 4.0, 4.0)
    assert (w["day1"].value, w["day1"].n) == (6.0, 1)
    assert w["day3"].value == 5.0 and w["day7"].value == 4.0 and w["day7"].n == 1
    # Daily values after 1 March: 2nd 6, 4th 5, 7th 4 (<= pre 4): relapse, 6 days.
    assert (e.durability_days, e.effect_ended) == (6, True)


def test_session_without_a_pre_value(db):
    p = f.patient(db)
    f.mood(db, p, "2026-02-27T09:00:00+00:00", 5)  # more than 24 h before: not pre
    s = f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.mood(db, p, "2026-03-02T10:00:00+00:00", 8)
    e = _effect(db, p, s)
    assert e.pre is None
    assert next(w for w in e.windows if w.name == "day1").value == 8.0
    assert next(w for w in e.windows if w.name == "day1").delta is None
    assert (e.durability_days, e.effect_ended) == (None, None)


def test_fallback_pre_and_durability_still_holding_when_data_ends(db):
    p = f.patient(db, "America/Los_Angeles")
    f.mood(db, p, "2026-02-28T12:00:00-08:00", 9)
    f.mood(db, p, "2026-03-01T06:00:00-08:00", 3)  # last in [s - 24 h, s): pre 3
    s = f.session(db, p, "2026-03-01T08:00:00-08:00")
    f.mood(db, p, "2026-03-01T20:00:00-08:00", 2)  # local d0 (1 March): not walked
    f.mood(db, p, "2026-03-02T20:00:00-08:00", 6)  # 04:00 UTC on 3 March: local 2 March
    f.mood(db, p, "2026-03-05T09:00:00-08:00", 5)
    e = _effect(db, p, s)
    assert (e.pre, e.pre_source) == (3.0, "last_24h")
    # Dates after 1 March: 2nd (6), 5th (5), both better than 3: holding, 4 days.
    assert (e.durability_days, e.effect_ended) == (4, False)


def test_cancelled_session_between_two_completed_changes_nothing(db):
    p = f.patient(db)
    first = f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.session(db, p, "2026-03-03T10:00:00+00:00", status="cancelled")
    second = f.session(db, p, "2026-03-06T10:00:00+00:00")
    f.mood(db, p, "2026-03-01T09:00:00+00:00", 4)  # pre of the first
    f.mood(db, p, "2026-03-04T10:00:00+00:00", 7)  # day3 of the first, despite the cancel
    f.mood(db, p, "2026-03-06T09:00:00+00:00", 6)  # in the first's span; pre of the second
    f.mood(db, p, "2026-03-07T10:00:00+00:00", 6)  # second's span: day1, not the first's
    one, two = _effect(db, p, first), _effect(db, p, second)
    assert one.span_end == second.started_at
    assert next(w for w in one.windows if w.name == "day3").value == 7.0
    assert next(w for w in one.windows if w.name == "day7").value is None  # cut by the span
    # First: dates after 1 March in its span: 4th 7, 6th 6: still holding at the span end.
    assert (one.durability_days, one.effect_ended) == (5, False)
    assert two.pre == 6.0
    assert (two.durability_days, two.effect_ended) == (1, True)  # 7 March: 6 >= ... no better
    assert next(w for w in two.windows if w.name == "day1").value == 6.0


def test_down_metrics_improve_downwards(db):
    p = f.patient(db)
    s = f.session(db, p, "2026-03-01T10:00:00+00:00")
    f.phq9(db, p, "2026-03-01T09:00:00+00:00", 20)
    f.phq9(db, p, "2026-03-02T10:00:00+00:00", 12)
    f.phq9(db, p, "2026-03-05T10:00:00+00:00", 21)
    e = _effect(db, p, s, metric="phq9")
    day1 = next(w for w in e.windows if w.name == "day1")
    assert (day1.delta, day1.improvement) == (-8.0, 8.0)
    assert (e.durability_days, e.effect_ended) == (4, True)  # 21 >= 20 on 5 March


def test_the_series_as_orjson_writes_it_equals_the_marshmallow_schemas(db):
    from api.http import encode_json
    from schemas.analytics import BucketOut, RollingOut

    p = f.patient(db)
    for day, value in ((1, 2), (2, 5), (9, 7)):
        f.mood(db, p, f"2026-03-{day:02d}T12:00:00+00:00", value)
    f.mood(db, p, "2026-03-09T18:00:00+00:00", 4)
    days = series(db=db, patient_id=p.id, metric="mood", bucket="day")
    assert json.loads(encode_json(days)) == BucketOut(many=True).dump(days)
    assert days[-1].mean == 5.5 and days[-1].n == 2
    points = rolling7(days)
    expected = RollingOut(many=True).dump([{"date": q.date, "mean": q.mean} for q in points])
    assert json.loads(encode_json(points)) == expected
    # The same text, key order included, as the schemas' dicts would give.
    assert encode_json(days) == encode_json(BucketOut(many=True).dump(days))


def test_current_window_bounds_keep_microseconds(db):
    p = f.patient(db)
    f.mood(db, p, "2026-03-01T12:00:00.999600+00:00", 1)  # exactly L - 7 d: excluded
    f.mood(db, p, "2026-03-01T12:00:00.999700+00:00", 5)  # 100 µs later: included
    f.mood(db, p, "2026-03-08T12:00:00.999600+00:00", 7)  # L
    assert current(db=db, patient_id=p.id, metric="mood").value == 6.0


def test_two_sessions_within_a_day_share_the_last_measurement_as_pre(db):
    p = f.patient(db)
    f.mood(db, p, "2026-03-01T07:00:00+00:00", 4)  # in [s - 24 h, s) of both sessions
    first = f.session(db, p, "2026-03-01T08:00:00+00:00")
    second = f.session(db, p, "2026-03-01T20:00:00+00:00")
    found = {
        e.session_id: (e.pre, e.pre_source) for e in effects(db=db, patient_id=p.id, metric="mood")
    }
    assert found == {first.id: (4.0, "last_24h"), second.id: (4.0, "last_24h")}


def test_an_unchanged_down_metric_improves_by_zero_not_minus_zero() -> None:
    # Negating an unchanged PHQ-9 (0.0) gives -0.0, which JSON would print as "-0.0".
    assert str(improvement_of("phq9", 0.0)) == "0.0"
    assert improvement_of("phq9", 2.0) == -2.0
    assert str(improvement_of("mood", -0.0)) == "0.0"
