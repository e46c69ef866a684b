"""The report page: one self-contained, printable HTML document with the JSON report's figures.

The page is parsed with xml.etree (it is written as well-formed XML). Every figure on it
carries the JSON pointer it came from; the central test resolves each pointer in the JSON
report of the same patient (two years of data, 14 sessions) and holds the two equal, and
checks that no number on the page stands outside such a figure.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.headers import API_POLICY
from api.render.chart import METRIC_NAMES
from api.render.page import DRUGS, OPERATORS, ROUTES, WINDOWS, band_labels, resolve
from bench.report_page import ZONE, seed_course
from models.instruments import CATALOGUE
from tests.conftest import auth, link, make_staff, register_patient

SVG = "{http://www.w3.org/2000/svg}"
HTML = {"Accept": "text/html"}
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Words with digits that are names, not figures.
NAMES_WITH_DIGITS = ("PHQ-9", "GAD-7", "QIDS-SR16")
MISSING = {"\N{EN DASH}", "none", "not known", "not available", "no such item", ""}


@pytest.fixture
def two_years(app, client, db):
    """A patient in America/Chicago with two years of records, linked to a clinician."""
    patient = register_patient(client, timezone=ZONE)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    today = datetime.now(ZoneInfo(ZONE)).date()
    seeded = seed_course(db, patient_id=uuid.UUID(patient["id"]), today=today)
    db.commit()
    return {
        "patient": patient,
        "ph": ph,
        "ch": ch,
        "url": f"/api/v1/patients/{patient['id']}/report",
        "seeded": seeded,
    }


def _page(response) -> ET.Element:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return ET.fromstring(response.get_data(as_text=True))


def _body(root: ET.Element) -> ET.Element:
    return root.find("body")


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _shown_number(text: str) -> float:
    return float(text.replace("\N{MINUS SIGN}", "-").replace("+", "").replace("%", "").strip())


def _labels() -> dict[str, set[str]]:
    """Every way the page may print a code."""
    found: dict[str, set[str]] = {}
    for table in (
        band_labels(),
        {c: i.name for c, i in CATALOGUE.items()},
        METRIC_NAMES,
        DRUGS,
        ROUTES,
        OPERATORS,
        WINDOWS,
    ):
        for code, label in table.items():
            found.setdefault(code, set()).add(label)
    return found


def _check_figure(element: ET.Element, document: dict, labels: dict[str, set[str]]) -> None:
    key = element.get("data-key")
    value = resolve(document, key)
    shown = (element.text or "").strip()
    if element.tag == "time":
        assert element.get("datetime") == value, key
        if len(value) == 10:
            day = date.fromisoformat(value)
            assert shown == f"{day.day} {day:%b} {day.year}", key
        elif key.endswith("/started_at"):
            offset = resolve(document, key.rsplit("/", 1)[0] + "/utc_offset")
            local = datetime.fromisoformat(value).astimezone(
                datetime.fromisoformat(f"2000-01-01T00:00:00{offset}").tzinfo
            )
            assert shown == local.strftime("%H:%M"), key
        return
    assert element.tag == "data", key
    expected = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    assert element.get("value") == expected, key
    if value is None:
        assert shown in MISSING, (key, shown)
    elif isinstance(value, bool):
        words = {True: {"yes", "positive", "(ended)"}, False: {"no", "not positive", "(held)"}}
        assert shown in words[value], (key, shown)
    elif isinstance(value, int | float):
        if shown.endswith("%"):  # a fraction as a whole percentage
            assert _shown_number(shown) == round(100 * value), key
        elif float(value).is_integer():
            assert _shown_number(shown) == value, key
        else:
            # Rounded for reading: never further than half the last digit shown.
            digits = len(shown.split(".")[1]) if "." in shown else 0
            assert abs(_shown_number(shown) - value) <= 0.5 * 10**-digits + 1e-9, (key, shown)
    else:
        assert shown == value or shown in labels.get(value, set()), (key, shown)


def _free_text(element: ET.Element, skip_own: bool = False) -> list[str]:
    """Text on the page that is not inside a figure, a chart or the safety box."""
    out: list[str] = []
    own = element.tag in ("data", "time", f"{SVG}svg") or "safety" in (element.get("class") or "")
    if not own and element.text:
        out.append(element.text)
    if not own:
        for child in element:
            out.extend(_free_text(child))
            if child.tail:
                out.append(child.tail)
    return out


def test_every_figure_on_the_page_is_the_json_reports(client, two_years):
    document = client.get(two_years["url"], headers=two_years["ch"]).get_json()
    root = _page(client.get(two_years["url"], headers={**two_years["ch"], **HTML}))
    assert document["course"]["sessions_completed"] == two_years["seeded"]["sessions"] == 14
    assert len(document["questionnaires"]) == two_years["seeded"]["assessments"]
    labels = _labels()
    figures = [e for e in root.iter() if e.get("data-key")]
    for element in figures:
        if element.get("data-key") != "/generated_at":  # a second request, a later instant
            _check_figure(element, document, labels)
    keys = {e.get("data-key") for e in figures}
    # Every figure the issue names is on the page: the headline, each session's row,
    # each questionnaire's row, adherence.
    phq9 = f"/trends/{[t['metric'] for t in document['trends']].index('phq9')}/summary"
    mood = f"/trends/{[t['metric'] for t in document['trends']].index('mood')}/summary"
    wanted = {f"{phq9}/{k}" for k in ("latest_value", "band", "change", "baseline", "current")}
    wanted |= {f"{phq9}/response", f"{phq9}/remission", f"{mood}/current", "/open_alerts"}
    wanted |= {"/course/sessions_completed", "/period/from", "/period/to"}
    for i in range(len(document["course"]["sessions"])):
        wanted |= {
            f"/course/sessions/{i}/{k}"
            for k in (
                "number", "local_date", "started_at", "drug", "route", "dose_mg_per_kg", "pre",
                "acute_change", "day1_change", "day3_change", "day7_change", "durability_days",
            )
        }  # fmt: skip
    for i in range(len(document["questionnaires"])):
        wanted |= {
            f"/questionnaires/{i}/{k}"
            for k in ("local_date", "instrument", "total", "band", "self_harm_item_positive")
        }
    wanted |= {f"/adherence/{k}" for k in ("days", "days_with_entries", "fraction", "from", "to")}
    wanted |= {"/definitions/ruleset_version", "/definitions/baseline_days"}
    assert wanted <= keys, sorted(wanted - keys)[:10]
    # Adverse events are printed as recorded.
    events = [e for e in figures if "/adverse_events/" in e.get("data-key")]
    assert [e.text for e in events] == ["nausea", "blood pressure 158/92 at 40 min", "dizziness"]
    # No number anywhere else in the body (chart axes aside): each is a figure of the JSON.
    loose = " ".join(_free_text(_body(root)))
    for name in NAMES_WITH_DIGITS:
        loose = loose.replace(name, "")
    assert re.findall(r"\S*\d\S*", loose) == [], loose


def test_the_charts_draw_the_json_reports_charts(client, two_years):
    document = client.get(two_years["url"], headers=two_years["ch"]).get_json()
    root = _page(client.get(f"{two_years['url']}?format=html", headers=two_years["ch"]))
    charts = list(root.iter(f"{SVG}svg"))
    assert [c.get("data-metric") for c in charts] == [c["metric"] for c in document["charts"]]
    assert [c["metric"] for c in document["charts"]] == ["phq9", "mood"]
    for svg, chart in zip(charts, document["charts"], strict=True):
        points = [e for e in svg.iter() if "point" in (e.get("class") or "").split()]
        assert [
            (p.get("data-date"), float(p.get("data-value")), p.get("data-side") or None)
            for p in points
        ] == [(p["date"], p["value"], p["side"]) for p in chart["points"]]
        markers = [e for e in svg.iter() if e.get("class") == "session-marker"]
        assert [(int(m.get("data-number")), m.get("data-date")) for m in markers] == [
            (s["number"], s["date"]) for s in chart["sessions"]
        ]
        gaps = [e for e in svg.iter() if e.get("class") == "gap"]
        assert [(g.get("data-after"), g.get("data-before")) for g in gaps] == [
            (g["after"], g["before"]) for g in chart["gaps"]
        ]
        (baseline,) = [e for e in svg.iter() if e.get("class") == "baseline"]
        assert float(baseline.get("data-value")) == chart["baseline"]
        (latest,) = [e for e in svg.iter() if e.get("class") == "latest"]
        assert float(latest.get("data-value")) == chart["latest"]["value"]
    # The seeded course shows what the issue describes: a PHQ-9 gap of four weeks across
    # the induction series; in the mood chart's 12 weeks, session days with before and
    # after marks; the baseline drawn is the summary's.
    phq9, mood = document["charts"]
    summaries = {t["metric"]: t["summary"] for t in document["trends"]}
    assert phq9["baseline"] == summaries["phq9"]["baseline"]
    assert mood["baseline"] == summaries["mood"]["baseline"]
    assert phq9["latest"]["value"] == summaries["phq9"]["latest_value"]
    induction = [s["date"] for s in phq9["sessions"]][:6]
    assert any(g["before"] > induction[-1] and g["after"] < induction[0] for g in phq9["gaps"])
    assert len(mood["sessions"]) == 3
    sides = [(p["date"], p["side"]) for p in mood["points"] if p["side"]]
    for session in mood["sessions"]:
        assert [(session["date"], "before"), (session["date"], "after")] == [
            s for s in sides if s[0] == session["date"]
        ]
    days = (date.fromisoformat(mood["to"]) - date.fromisoformat(mood["from"])).days + 1
    assert days == document["definitions"]["mood_chart_days"] == 84


def test_page_sections_in_reading_order_and_accessible(client, two_years):
    root = _page(client.get(two_years["url"], headers={**two_years["ch"], **HTML}))
    assert root.get("lang") == "en"
    body = _body(root)
    assert _text(body.find(".//h1")) == "Treatment report: Pat"
    meta = _text(body.find(".//header"))
    assert "Time zone America/Chicago" in meta and "not monitored in real time" in meta
    assert [_text(h) for h in body.iter("h2")] == [
        "Headline",
        "Charts",
        "Treatment sessions",
        "Questionnaires",
        "Adherence, the last 14 days",
        "Definitions",
        "Safety",
    ]
    tables = list(body.iter("table"))
    assert len(tables) == 2
    for table in tables:
        assert table.find("caption") is not None and _text(table.find("caption"))
        head = table.find("thead")
        assert all(th.get("scope") == "col" for th in head.iter("th"))
        for row in table.find("tbody"):
            first = row[0]
            assert first.tag == "th" and first.get("scope") == "row"
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    for svg in root.iter(f"{SVG}svg"):
        assert svg.get("role") == "img"
        title_id, desc_id = svg.get("aria-labelledby").split()
        title = next(e for e in svg.iter(f"{SVG}title") if e.get("id") == title_id)
        desc = next(e for e in svg.iter(f"{SVG}desc") if e.get("id") == desc_id)
        assert title.text and len(desc.text) > 80
    safety = _text(next(e for e in body.iter("section") if e.get("class") == "safety"))
    assert "Entries are not monitored in real time." in safety and "988" in safety
    assert "does not mean a person is safe" in safety
    # A positive self-harm item is marked by more than colour: a marker and bold text.
    positive = [r for r in body.iter("tr") if r.get("class") == "positive"]
    assert len(positive) == 2
    for row in positive:
        assert "▲ positive" in _text(row)


def test_print_stylesheet_keeps_rows_whole_and_repeats_headers(client, two_years):
    root = _page(client.get(two_years["url"], headers={**two_years["ch"], **HTML}))
    css = " ".join(root.find("head").find("style").text.split())
    media = css[css.index("@media print") :]
    assert "@page" in media and "counter(page)" in media
    assert "thead { display: table-header-group; }" in media
    assert "tr, th, td { break-inside: avoid; page-break-inside: avoid; }" in media
    assert "figure," in media and "break-inside: avoid" in media
    assert "h2 { break-after: avoid;" in media


def test_page_is_self_contained(client, two_years):
    response = client.get(two_years["url"], headers={**two_years["ch"], **HTML})
    text = response.get_data(as_text=True)
    root = _page(response)
    for element in root.iter():
        assert element.tag.rsplit("}", 1)[-1] not in ("script", "iframe", "object", "embed")
        for name, value in element.attrib.items():
            local = name.rsplit("}", 1)[-1]
            if local in ("src", "href", "action", "formaction", "poster", "data", "srcset"):
                assert value.startswith("#") or value == "data:,", (element.tag, name, value)
            assert not local.startswith("on"), (element.tag, name)
            if local == "fill" or local == "style":
                assert "url(" not in value or value.startswith("url(#"), value
    css = root.find("head").find("style").text
    assert "@import" not in css and "url(" not in css
    # The only URLs are XML namespaces, which are names, never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "<script" not in text.lower()


def test_html_by_accept_or_format_with_headers_access_and_audit(app, client, two_years):
    url, ch = two_years["url"], two_years["ch"]
    by_accept = client.get(url, headers={**ch, **HTML})
    by_format = client.get(f"{url}?format=html", headers=ch)
    browser = client.get(url, headers={**ch, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    for response in (by_accept, by_format, browser):
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"] == CSP
    # curl's */* and no Accept at all still get JSON; the other formats are unchanged.
    assert client.get(url, headers={**ch, "Accept": "*/*"}).mimetype == "application/json"
    # JSON keeps the strict policy every API response has; only the page allows its styles.
    assert client.get(url, headers=ch).headers["Content-Security-Policy"] == API_POLICY
    # Same access rules as the JSON report.
    other = auth(client, register_patient(client)["email"])
    stranger = auth(client, make_staff(app)["email"])
    for headers, status in ((other, 404), (stranger, 404), ({}, 401)):
        denied = client.get(f"{url}?format=html", headers={**headers, **HTML})
        assert denied.status_code == status and denied.mimetype == "application/problem+json"
        assert "Pat" not in denied.get_data(as_text=True)
    # Audited like the JSON report: the patient sees the clinician's read of "report".
    log = client.get("/api/v1/patients/me/access-log?limit=500", headers=two_years["ph"])
    reads = [e for e in log.get_json()["items"] if e["resource_type"] == "report"]
    assert len(reads) >= 3 and {e["actor_role"] for e in reads} == {"clinician"}
    assert {e["action"] for e in reads} == {"read"}


def test_the_patient_reads_their_own_page_without_the_care_teams_alerts(client, two_years):
    document = client.get("/api/v1/patients/me/report", headers=two_years["ph"]).get_json()
    assert document["open_alerts"] is None
    clinician = client.get(two_years["url"], headers=two_years["ch"]).get_json()
    assert clinician["open_alerts"] == 1  # the recent self-harm item's alert
    root = _page(client.get("/api/v1/patients/me/report?format=html", headers=two_years["ph"]))
    cards = {_text(dl.find("dt")): _text(dl) for dl in _body(root).iter("dl")}
    assert cards["Open alerts"] == "Open alerts shown to the care team"


def test_a_range_bounds_the_page_like_the_json(client, two_years):
    today = datetime.now(ZoneInfo(ZONE)).date()
    start, end = today - timedelta(days=120), today - timedelta(days=30)
    query = f"from={start.isoformat()}&to={end.isoformat()}"
    document = client.get(f"{two_years['url']}?{query}", headers=two_years["ch"]).get_json()
    assert document["period"] == {"from": start.isoformat(), "to": end.isoformat()}
    root = _page(client.get(f"{two_years['url']}?{query}&format=html", headers=two_years["ch"]))
    table = next(t for t in root.iter("table") if "questionnaire" in _text(t.find("caption")))
    shown = [
        e.get("datetime")
        for e in table.iter("time")
        if re.fullmatch(r"/questionnaires/\d+/local_date", e.get("data-key"))
    ]
    assert shown == [q["local_date"] for q in document["questionnaires"]]
    assert shown and all(start.isoformat() <= d <= end.isoformat() for d in shown)
    rows = [
        e.get("datetime")
        for e in root.iter("time")
        if re.fullmatch(r"/course/sessions/\d+/local_date", e.get("data-key"))
    ]
    in_range = [
        s["local_date"]
        for s in document["course"]["sessions"]
        if start.isoformat() <= s["local_date"] <= end.isoformat()
    ]
    assert rows == in_range and len(rows) < len(document["course"]["sessions"])


def test_text_from_people_is_escaped_never_markup(app, client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    ch = auth(client, make_staff(app)["email"])
    link(client, ch, ph)
    name = '<script>alert("x")</script> & <b>Pat</b>'
    me = client.get("/api/v1/me", headers=ph)
    changed = client.patch(
        "/api/v1/me", json={"display_name": name}, headers={**ph, "If-Match": me.headers["ETag"]}
    )
    assert changed.status_code == 200
    started = (datetime.now(ZoneInfo("America/Chicago")) - timedelta(days=1)).isoformat()
    created = client.post(
        f"/api/v1/patients/{patient['id']}/sessions",
        json={
            "status": "completed",
            "started_at": started,
            "drug": "ketamine",
            "route": "iv",
            "dose_mg": 35,
            "weight_kg": 70,
            "setting": "clinic",
            "adverse_events": ['<img src="https://evil.example/x.png">'],
        },
        headers=ch,
    )
    assert created.status_code == 201, created.get_json()
    response = client.get(f"/api/v1/patients/{patient['id']}/report?format=html", headers=ch)
    root = _page(response)
    assert not [e for e in root.iter() if e.tag in ("script", "img", "b")]
    assert _text(_body(root).find(".//h1")) == f"Treatment report: {name}"
    assert root.find("head").find("title").text == f"Treatment report: {name}"
    events = [e.text for e in root.iter("data") if "/adverse_events/" in e.get("data-key")]
    assert events == ['<img src="https://evil.example/x.png">']


def test_a_patient_without_records_gets_a_page_that_says_so(client):
    patient = register_patient(client)
    ph = auth(client, patient["email"])
    root = _page(client.get("/api/v1/patients/me/report?format=html", headers=ph))
    body = _text(_body(root))
    assert "No completed session in this period." in body
    assert "No questionnaire in this period." in body
    assert "Mood logged on 0 of 14 days (0 %)" in body
    assert len(list(root.iter(f"{SVG}svg"))) == 2
    assert "No data in this range" in body


def _keys(element: ET.Element) -> list[str]:
    return [e.get("data-key") for e in element.iter() if e.get("data-key")]


def test_each_figure_stands_under_its_own_label(client, two_years):
    document = client.get(two_years["url"], headers=two_years["ch"]).get_json()
    root = _page(client.get(two_years["url"], headers={**two_years["ch"], **HTML}))
    metrics = [t["metric"] for t in document["trends"]]
    phq9 = f"/trends/{metrics.index('phq9')}/summary"
    mood = f"/trends/{metrics.index('mood')}/summary"
    latest = max(i for i, q in enumerate(document["questionnaires"]) if q["instrument"] == "phq9")
    # The date shown beside the latest PHQ-9 is that very questionnaire's.
    row = document["questionnaires"][latest]
    summary = resolve(document, phq9)
    assert (row["occurred_at"], float(row["total"])) == (
        summary["latest_at"],
        summary["latest_value"],
    )
    cards = {_text(dl.find("dt")): _keys(dl) for dl in _body(root).iter("dl")}
    assert cards == {
        "Latest PHQ-9": [
            f"{phq9}/latest_value",
            f"{phq9}/band",
            f"/questionnaires/{latest}/local_date",
        ],
        "PHQ-9 change from baseline": [
            f"{phq9}/change",
            f"{phq9}/percent_change",
            f"{phq9}/baseline",
            f"{phq9}/current",
        ],
        "Response / remission (PHQ-9)": [
            f"{phq9}/response",
            f"{phq9}/remission",
            f"{phq9}/reliable_improvement",
        ],
        "Sessions completed": ["/course/sessions_completed", "/counts/sessions_completed"],
        "Mood (0 to 10, higher is better)": [
            "/charts/1/low",
            "/charts/1/high",
            f"{mood}/baseline",
            f"{mood}/current",
            f"{mood}/change",
        ],
        "Open alerts": ["/open_alerts"],
    }
    sessions, forms = root.iter("table")
    columns = [_text(th) for th in sessions.find("thead").iter("th")]
    assert columns[:9] == [
        "No.", "Date", "Drug, route", "Dose mg/kg", "Pre", "Acute", "Day 1", "Day 3", "Day 7"
    ]  # fmt: skip
    for i, row in enumerate(sessions.find("tbody")):
        p = f"/course/sessions/{i}"
        assert [_keys(cell) for cell in row][:9] == [
            [f"{p}/number"],
            [f"{p}/local_date", f"{p}/started_at"],
            [f"{p}/drug", f"{p}/route"],
            [f"{p}/dose_mg_per_kg"],
            [f"{p}/pre"],
            [f"{p}/acute_change"],
            [f"{p}/day1_change"],
            [f"{p}/day3_change"],
            [f"{p}/day7_change"],
        ]
        assert _keys(row[9])[0] == f"{p}/durability_days"
    assert [_text(th) for th in forms.find("thead").iter("th")] == [
        "Date",
        "Instrument",
        "Total",
        "Band",
        "Self-harm item",
        "Session",
    ]
    for i, row in enumerate(forms.find("tbody")):
        p = f"/questionnaires/{i}"
        assert [_keys(cell)[:1] for cell in row][:5] == [
            [f"{p}/local_date"],
            [f"{p}/instrument"],
            [f"{p}/total"],
            [f"{p}/band"],
            [f"{p}/self_harm_item_positive"],
        ]
