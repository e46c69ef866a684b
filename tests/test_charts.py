"""The chart tells the truth: what its points are, where they sit, what joins them.

Each test reads the SVG the API serves (xml.etree) and checks positions and labels against
values worked by hand: the x of a day is the centre of its slot in the frame, the y of a
value its place on the metric's scale (Size() is the chart.svg drawing: 640 x 400).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import date
from itertools import pairwise

import pytest

from api.render.chart import Size, plural, segments
from models import User
from models.charts import ChartPoint, gaps_between, join_days
from tests import factories as f
from tests.conftest import auth, register_patient

SVG = "{http://www.w3.org/2000/svg}"
TRANSLATE = re.compile(r"translate\(([-\d.]+) ([-\d.]+)\)")


@pytest.fixture
def course(client, db):
    """A patient (UTC-5) with PHQ-9s two weeks apart, then four weeks apart across three
    sessions, and a session day with pre, post and evening mood entries."""
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    who = db.get(User, uuid.UUID(patient["id"]))
    for day, total in (("01-01", 20), ("01-15", 18), ("02-12", 10), ("02-26", 8)):
        f.phq9(db, who, f"2026-{day}T09:00:00-05:00", total)
    s1 = f.session(db, who, "2026-01-20T10:00:00-05:00")
    f.session(db, who, "2026-01-27T10:00:00-05:00")
    f.session(db, who, "2026-02-03T10:00:00-05:00")
    f.mood(db, who, "2026-01-19T20:00:00-05:00", 4)
    f.mood(db, who, "2026-01-20T08:30:00-05:00", 3, session_id=s1.id, phase="pre")
    f.mood(db, who, "2026-01-20T12:00:00-05:00", 7, session_id=s1.id, phase="post")
    f.mood(db, who, "2026-01-20T20:00:00-05:00", 6)
    f.mood(db, who, "2026-01-21T20:00:00-05:00", 6)
    f.mood(db, who, "2026-01-23T20:00:00-05:00", 5)
    db.commit()
    return {"headers": headers, "base": f"/api/v1/patients/{patient['id']}"}


def _chart(client, course, query):
    response = client.get(f"{course['base']}/chart.svg?{query}", headers=course["headers"])
    assert response.status_code == 200
    return ET.fromstring(response.get_data(as_text=True))


def _by_class(root, name):
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def _xy(element):
    x, y = TRANSLATE.fullmatch(element.get("transform")).groups()
    return float(x), float(y)


def _polylines(root):
    return [
        [tuple(float(v) for v in pair.split(",")) for pair in line.get("points").split()]
        for line in _by_class(root, "segment")
    ]


def _x_day(day: date, start: date, slots: int, right: int = 20) -> float:
    size = Size()
    plot_w = size.width - size.left - right
    return size.left + ((day - start).days + 0.5) * plot_w / slots


def _y(value: float, root) -> float:
    """A value's y, from the y axis' own grid: each labelled tick's line is at its value."""
    axis = _by_class(root, "y-axis")[0]
    lines = [e for e in axis if e.tag == f"{SVG}line"]
    ticks = [float(e.text) for e in axis if e.tag == f"{SVG}text" and e.get("text-anchor") == "end"]
    (low, y_low), (high, y_high) = (
        (ticks[0], float(lines[0].get("y1"))),
        (
            ticks[-1],
            float(lines[-1].get("y1")),
        ),
    )
    return y_low + (value - low) * (y_high - y_low) / (high - low)


def test_phq9_points_are_totals_and_a_four_week_gap_has_no_line(client, course):
    root = _chart(client, course, "metric=phq9")
    heading = "".join(_by_class(root, "subtitle")[0].itertext())
    assert root.find(f"{SVG}title").text == "PHQ-9 total (lower is better)"
    assert "".join(next(e for e in root if e.tag == f"{SVG}text").itertext()).startswith(
        "PHQ-9 total"
    )
    assert "4 questionnaires" in heading
    text = ET.tostring(root, encoding="unicode")
    assert "daily mean" not in text.lower() and "Daily mean" not in text
    legend = [" ".join(e.itertext()) for e in _by_class(root, "legend")[0]]
    assert legend[0] == "one questionnaire"
    # Frame: 1 Jan (first PHQ-9) to 26 Feb (last): 57 slots; with bands the plot is 104 px
    # narrower. Points at their days' centres, in time order.
    start, slots = date(2026, 1, 1), 57
    points = _by_class(root, "point")
    days = [date(2026, 1, 1), date(2026, 1, 15), date(2026, 2, 12), date(2026, 2, 26)]
    assert [p.get("data-date") for p in points] == [d.isoformat() for d in days]
    assert [float(p.get("data-value")) for p in points] == [20.0, 18.0, 10.0, 8.0]
    xs = [_xy(p)[0] for p in points]
    assert xs == pytest.approx([_x_day(d, start, slots, right=124) for d in days], abs=0.01)
    assert [_xy(p)[1] for p in points] == pytest.approx(
        [_y(v, root) for v in (20, 18, 10, 8)], abs=0.01
    )
    # Two lines: 1 to 15 Jan (14 days) and 12 to 26 Feb; none across the 28 days between.
    lines = _polylines(root)
    assert len(lines) == 2
    assert [round(x, 1) for x, _ in lines[0]] == [round(x, 1) for x in xs[:2]]
    assert [round(x, 1) for x, _ in lines[1]] == [round(x, 1) for x in xs[2:]]
    (gap,) = _by_class(root, "gap")
    assert (gap.get("data-after"), gap.get("data-before"), gap.get("data-days")) == (
        "2026-01-15",
        "2026-02-12",
        "28",
    )
    assert "28 days apart, so no line joins them" in gap.find(f"{SVG}title").text
    rect = gap.find(f"{SVG}rect")
    left, width = float(rect.get("x")), float(rect.get("width"))
    assert (left, left + width) == pytest.approx((xs[1], xs[2]), abs=0.06)
    # The three sessions all fall inside the gap: nothing was measured across them.
    markers = _by_class(root, "session-marker")
    assert [m.get("data-number") for m in markers] == ["1", "2", "3"]
    for marker in markers:
        x = float(marker.find(f"{SVG}line").get("x1"))
        assert xs[1] < x < xs[2]
    assert "28 days" in [" ".join(e.itertext()) for e in _by_class(root, "gap-label")]


def test_baseline_and_latest_are_labelled_on_the_chart(client, course):
    root = _chart(client, course, "metric=phq9")
    # Baseline: the fortnight before S1 (20 Jan 10:00) holds the 18 of 15 Jan only.
    (baseline,) = _by_class(root, "baseline")
    assert float(baseline.get("data-value")) == 18.0
    line = baseline.find(f"{SVG}line")
    assert float(line.get("y1")) == pytest.approx(_y(18, root), abs=0.06)
    label = _by_class(root, "baseline-label")[0]
    assert label.text == "baseline 18"
    assert abs(float(label.get("y")) - float(line.get("y1"))) <= 15  # just above or below it
    (latest,) = _by_class(root, "latest")
    assert (latest.get("data-date"), float(latest.get("data-value"))) == ("2026-02-26", 8.0)
    assert _by_class(root, "latest-label")[0].text == "latest 8"
    ring = latest.find(f"{SVG}circle")
    last = _by_class(root, "point")[-1]
    assert (float(ring.get("cx")), float(ring.get("cy"))) == pytest.approx(_xy(last), abs=0.06)
    assert "baseline 18" in root.find(f"{SVG}desc").text


def test_session_day_shows_pre_and_post_as_their_own_marks(client, course):
    root = _chart(client, course, "metric=mood")
    assert root.find(f"{SVG}title").text == "Mood, daily mean (higher is better)"
    points = _by_class(root, "point")
    found = [
        (p.get("data-date"), p.get("data-side"), float(p.get("data-value")), p.get("data-n"))
        for p in points
    ]
    # 20 Jan: 3 before the 10:00 session; 7 at 12:00 and 6 at 20:00 from it on (6.5, n 2).
    # Never the mixed day mean (3 + 7 + 6) / 3.
    assert found == [
        ("2026-01-19", "", 4.0, "1"),
        ("2026-01-20", "before", 3.0, "1"),
        ("2026-01-20", "after", 6.5, "2"),
        ("2026-01-21", "", 6.0, "1"),
        ("2026-01-23", "", 5.0, "1"),
    ]
    # Frame 19 Jan to 3 Feb (the last session): 16 slots of 35.25 px; the marks sit 6 px
    # either side of the session line at the day's centre.
    start, slots = date(2026, 1, 19), 16
    centre = _x_day(date(2026, 1, 20), start, slots)
    session = _by_class(root, "session-marker")[0]
    assert session.get("data-date") == "2026-01-20"
    assert float(session.find(f"{SVG}line").get("x1")) == pytest.approx(centre, abs=0.06)
    before, after = _xy(points[1])[0], _xy(points[2])[0]
    assert (before, after) == pytest.approx((centre - 6, centre + 6), abs=0.01)
    # Shapes, not colour, tell them apart: a square before, a triangle after, discs else.
    assert [p[0].tag for p in points] == [
        f"{SVG}circle",
        f"{SVG}rect",
        f"{SVG}polygon",
        f"{SVG}circle",
        f"{SVG}circle",
    ]
    legend = [" ".join(e.itertext()) for e in _by_class(root, "legend")[0]]
    assert legend[:3] == [
        "mean of one day",
        "before the session, that day",
        "from the session on, that day",
    ]


def test_x_positions_run_in_time_order(client, course):
    for metric in ("mood", "phq9"):
        root = _chart(client, course, f"metric={metric}")
        points = _by_class(root, "point")
        rank = {"before": 0, "": 1, "after": 2}
        keys = [(p.get("data-date"), rank[p.get("data-side")]) for p in points]
        assert keys == sorted(keys)
        xs = [_xy(p)[0] for p in points]
        assert all(a < b for a, b in pairwise(xs)), metric
        # Every line runs through marks left to right.
        for line in _polylines(root):
            assert [x for x, _ in line] == sorted(x for x, _ in line)


def test_mood_lines_break_where_a_day_is_missing(client, course):
    root = _chart(client, course, "metric=mood")
    xs = [_xy(p)[0] for p in _by_class(root, "point")]
    # 19, 20 (before, after), 21 Jan joined; 23 Jan after a missing day stands alone.
    assert [[round(x, 1) for x, _ in line] for line in _polylines(root)] == [
        [round(x, 1) for x in xs[:4]]
    ]
    (gap,) = _by_class(root, "gap")
    assert (gap.get("data-after"), gap.get("data-before"), gap.get("data-days")) == (
        "2026-01-21",
        "2026-01-23",
        "2",
    )
    assert "gap: no line over 1 day" in [
        " ".join(e.itertext()) for e in _by_class(root, "legend")[0]
    ]


def test_counts_use_singular_and_plural(client):
    patient = register_patient(client)
    headers = auth(client, patient["email"])
    base = "/api/v1/patients/me"
    client.post(
        f"{base}/mood-entries",
        json={"occurred_at": "2026-11-20T09:00:00-06:00", "mood": 5},
        headers=headers,
    )
    one = ET.fromstring(client.get(f"{base}/chart.svg?metric=mood", headers=headers).get_data())
    subtitle = "".join(_by_class(one, "subtitle")[0].itertext())
    assert subtitle.endswith("· 1 day with data") and "1 days" not in subtitle
    assert "0 completed treatment sessions marked" in one.find(f"{SVG}desc").text
    client.post(
        f"{base}/mood-entries",
        json={"occurred_at": "2026-11-21T09:00:00-06:00", "mood": 6},
        headers=headers,
    )
    two = ET.fromstring(client.get(f"{base}/chart.svg?metric=mood", headers=headers).get_data())
    assert "".join(_by_class(two, "subtitle")[0].itertext()).endswith("· 2 days with data")
    assert (plural(1, "day"), plural(2, "day"), plural(1, "entry", "entries")) == (
        "1 day",
        "2 days",
        "1 entry",
    )


def test_join_limits_follow_each_metrics_usual_interval():
    assert (join_days("mood"), join_days("phq9"), join_days("gad7"), join_days("qids_sr16")) == (
        1,
        21,
        21,
        10,
    )
    points = [ChartPoint(date(2026, 1, d), 1.0, 1) for d in (1, 2, 4, 25)]
    assert [(g.after.day, g.before.day, g.days) for g in gaps_between(points, 1)] == [
        (2, 4, 2),
        (4, 25, 21),
    ]
    assert [[p.day.day for p in run] for run in segments(points, 21)] == [[1, 2, 4, 25]]
    assert [[p.day.day for p in run] for run in segments(points, 20)] == [[1, 2, 4], [25]]
