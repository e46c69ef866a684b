"""The report page for two years of data, proven in a real browser.

    python -m bench.report_page                      # SQLite (a temporary file)
    python -m bench.report_page --database-url postgresql://postgres@127.0.0.1:5432/bench \\
        --out /tmp/report --png docs/report-example.png

Seeds one patient (America/Chicago) with two years of daily mood, a PHQ-9 every 14 days
(two skipped: four-week gaps, one across the induction series), a GAD-7 every 28 days, a
course of 14 completed sessions with pre and post check-ins, and a clinician; times the
JSON report and the HTML page through the whole app; serves the app on 127.0.0.1 and
fetches the page over HTTP as a clinician's curl would; then hands that page, with the
headers the app sent (its Content-Security-Policy included), to headless Chromium from a
local server that also acts as Chromium's proxy and records every request it sees, and
renders it to PNG (--screenshot) and PDF (--print-to-pdf).

It exits non-zero (and says why) when Chromium is missing or exits with an error, logs an
error or any console message (a blocked request is one), the page asks for anything but
itself (Chromium's own net log, by the page's network isolation key, and the proxy's
record), an output is missing, or the PDF has no pages. Prints the figures.
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler, make_server

from bench.common import bench_app, describe, fresh_database
from models import Alert, CareLink, MoodEntry, TreatmentSession
from models.accounts import Role, create_user
from models.assessments import Assessment
from models.instruments import CATALOGUE, score
from models.organisations import MemberRole, add_member, create_organisation
from models.passwords import Argon2Params, Passwords

DAYS = 730
ZONE = "America/Chicago"
PASSWORD = "report page bench 2026"
# Completed sessions, by day of the two years (0 = the first day): an IV induction series
# (three a week), monthly esketamine boosters, and three in the last 12 weeks (the mood
# chart's window) so the page shows pre and post marks.
INDUCTION = (300, 302, 304, 307, 309, 311)
BOOSTERS = (345, 380, 420, 470, 530)
RECENT = (670, 700, 720)
CANCELLED = 600
# PHQ-9s not answered: a four-week gap across the induction series and one in a holiday.
SKIPPED_PHQ9 = (308, 560)
HOLIDAY = range(558, 567)  # no mood entries at all
ADVERSE = {2: ["nausea"], 4: ["blood pressure 158/92 at 40 min"], 9: ["dizziness"]}
SELF_HARM_DAYS = (280, 714)  # PHQ-9 item 9 = 1; the recent one's alert is still open
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--enable-logging=stderr",
    "--v=0",
)
# Lines Chromium logs in a container without a system bus; nothing to do with the page.
NOISE = re.compile(r"dbus|D-Bus|Floss|UPower|vaapi|drmGetDevices|InitializeSandbox")
PAGE_PATH = "/report.html"


# ---------------------------------------------------------------- the data


def _local(day: date, hour: float, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock(0), tzinfo=zone) + timedelta(hours=hour)


def _stamp(at: datetime) -> dict[str, Any]:
    """The time columns of a record written at local instant ``at``."""
    offset = at.utcoffset() or timedelta(0)
    return {
        "occurred_at": at.astimezone(UTC),
        "utc_offset_minutes": int(offset.total_seconds() // 60),
        "local_date": at.date(),
    }


def mood_level(day: int, sessions: list[int]) -> float:
    """A plausible course: low before treatment, up after the induction series, drifting
    back between boosters; each session lifts it for about ten days."""
    level = 3.4
    if day >= INDUCTION[0]:
        level = 4.3 + 1.6 * max(0.0, 1 - (day - INDUCTION[-1]) / 400)
    for start in sessions:
        if 0 <= day - start < 12:
            level += 1.4 * (1 - (day - start) / 12)
    return level


def _answers(instrument: str, total: int, safety: int, rng: random.Random) -> list[int]:
    """Item answers that add up to ``total`` (PHQ-9: item 9 = ``safety``)."""
    count, high = len(CATALOGUE[instrument].items), 3
    answers = [0] * count
    rest = total - safety if instrument == "phq9" else total
    free = list(range(count - 1 if instrument == "phq9" else count))
    while rest > 0:
        i = rng.choice([k for k in free if answers[k] < high])
        answers[i] += 1
        rest -= 1
    if instrument == "phq9":
        answers[8] = safety
    return answers


def _phq9_total(day: int, rng: random.Random) -> int:
    if day < INDUCTION[0]:
        return rng.randint(16, 20)
    return max(3, min(24, round(13 - 4 * mood_level(day, []) / 6 + rng.randint(-2, 2))))


def seed_course(
    db: Session, *, patient_id: uuid.UUID, today: date, seed: int = 15
) -> dict[str, int]:
    """Two years of a patient's records up to ``today`` (local), written with bulk inserts
    (the API refuses instants older than a year). Returns how many of each were written."""
    rng, zone = random.Random(seed), ZoneInfo(ZONE)
    first = today - timedelta(days=DAYS - 1)
    common = {"patient_id": patient_id, "fingerprint": "r" * 64, "version": 1}
    session_days = sorted((*INDUCTION, *BOOSTERS, *RECENT))
    sessions = _sessions(session_days, first, zone, common)
    moods = _moods(session_days, sessions, first, zone, common, rng)
    forms, alerts = _forms(first, zone, common, rng)
    db.execute(insert(TreatmentSession), sessions)
    db.execute(insert(MoodEntry), moods)
    db.execute(insert(Assessment), forms)
    db.execute(insert(Alert), alerts)
    completed = sum(1 for s in sessions if s["status"] == "completed")
    return {"mood_entries": len(moods), "assessments": len(forms), "sessions": completed}


def _sessions(
    days: list[int], first: date, zone: ZoneInfo, common: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for number, day in enumerate([*days, CANCELLED], start=1):
        at = _local(first + timedelta(days=day), 10, zone)
        induction = day in INDUCTION
        stamp = _stamp(at)
        rows.append(
            {
                **common,
                "id": uuid.uuid4(),
                "status": "cancelled" if day == CANCELLED else "completed",
                "started_at": stamp["occurred_at"],
                "utc_offset_minutes": stamp["utc_offset_minutes"],
                "drug": "ketamine" if induction else "esketamine",
                "route": "iv" if induction else "intranasal",
                "dose_mg": 35.0 if induction else (56.0 if number < 10 else 84.0),
                "weight_kg": 70.0,
                "setting": "clinic",
                "concomitant_medications": [],
                "adverse_events": ADVERSE.get(number, []),
            }
        )
    return rows


def _moods(
    days: list[int],
    sessions: list[dict[str, Any]],
    first: date,
    zone: ZoneInfo,
    common: dict[str, Any],
    rng: random.Random,
) -> list[dict[str, Any]]:
    by_day = {day: sessions[i]["id"] for i, day in enumerate(days)}
    rows: list[dict[str, Any]] = []

    def entry(at: datetime, mood: float, **extra: Any) -> None:
        value = max(0, min(10, round(mood)))
        rows.append(
            {
                **common,
                **_stamp(at),
                "id": uuid.uuid4(),
                "mood": value,
                "change_seq": len(rows) + 1,
                **extra,
            }
        )

    for day in range(DAYS):
        local = first + timedelta(days=day)
        level = mood_level(day, days)
        if day in by_day:  # the session day: pre and post check-ins around a 10:00 start
            pre = mood_level(day - 1, days) + rng.uniform(-0.5, 0.5)
            entry(_local(local, 9, zone), pre, session_id=by_day[day], phase="pre")
            post = pre + rng.uniform(2, 3)
            entry(_local(local, 13, zone), post, session_id=by_day[day], phase="post")
        if day in HOLIDAY or (day not in by_day and rng.random() < 0.08):
            continue
        mood = level + rng.uniform(-1.2, 1.2)
        extra = {"anxiety": max(0, min(10, round(10 - mood + rng.uniform(-1, 1))))}
        if rng.random() < 0.5:
            extra["sleep_hours"] = round(rng.uniform(5, 8.5) * 2) / 2
        entry(_local(local, 20 + rng.uniform(-1.5, 1.5), zone), mood, **extra)
    return rows


def _forms(
    first: date, zone: ZoneInfo, common: dict[str, Any], rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    forms, alerts = [], []
    for day in range(0, DAYS, 14):
        if day in SKIPPED_PHQ9:
            continue
        day = min(day + rng.randint(0, 2), DAYS - 1)
        at = _local(first + timedelta(days=day), 8.5, zone)
        safety = 1 if any(abs(day - d) <= 2 for d in SELF_HARM_DAYS) else 0
        phq9 = _form("phq9", _answers("phq9", _phq9_total(day, rng), safety, rng), at, common)
        forms.append(phq9)
        if safety:
            alerts.append(_alert(phq9, acknowledged=day < DAYS - 30))
        if day % 28 < 3:
            total = max(2, _phq9_total(day, rng) - 3)
            gad7 = _form("gad7", _answers("gad7", total, 0, rng), at + timedelta(minutes=5), common)
            forms.append(gad7)
    return forms, alerts


def _form(
    instrument: str, answers: list[int], at: datetime, common: dict[str, Any]
) -> dict[str, Any]:
    result = score(CATALOGUE[instrument], answers)
    return {
        **common,
        **_stamp(at),
        "id": uuid.uuid4(),
        "instrument": instrument,
        "answers": answers,
        "total": result.total,
        "band": result.band.code if result.band else None,
        "flags": list(result.flags),
        "instrument_version": CATALOGUE[instrument].instrument_version,
        "scoring_version": CATALOGUE[instrument].scoring_version,
        "ruleset_version": "bench",
    }


def _alert(form: dict[str, Any], *, acknowledged: bool) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "patient_id": form["patient_id"],
        "rule": "self_harm",
        "priority": "medium",
        "source_type": "assessment",
        "source_id": form["id"],
        "created_at": form["occurred_at"],
        "acknowledged_at": form["occurred_at"] + timedelta(hours=3) if acknowledged else None,
        "ruleset_version": "bench",
        "details": {"instrument": "phq9", "item": 9, "value": 1, "total": form["total"]},
    }


# ---------------------------------------------------------------- the app


@dataclass
class Bench:
    """The app on a seeded database, and the clinician's view of one patient."""

    app: Any
    token: str
    patient_id: uuid.UUID
    seeded: dict[str, int]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def build(url: str) -> Bench:
    """A migrated database with a clinician and one linked patient's two years."""
    app = bench_app(url)
    passwords = Passwords(Argon2Params(time_cost=1, memory_kib=1024, parallelism=1))
    factory = app.extensions["moodtrack"].session_factory
    with factory() as db:
        people = {
            role: create_user(
                db=db,
                passwords=passwords,
                email=f"{role.value}@report.example",
                password=PASSWORD,
                role=role,
                display_name="Ana Example" if role == Role.patient else "Dr Rivera",
                timezone=ZONE,
            )
            for role in (Role.patient, Role.clinician)
        }
        patient, clinician = people[Role.patient], people[Role.clinician]
        clinic = create_organisation(db=db, name="Riverside Ketamine Clinic")
        add_member(db=db, user=clinician, organisation_id=clinic.id, role=MemberRole.clinician)
        db.add(
            CareLink(patient_id=patient.id, clinician_id=clinician.id, organisation_id=clinic.id)
        )
        today = datetime.now(ZoneInfo(ZONE)).date()
        seeded = seed_course(db, patient_id=patient.id, today=today)
        db.commit()
        patient_id = patient.id
    login = app.test_client().post(
        "/api/v1/auth/login", json={"email": "clinician@report.example", "password": PASSWORD}
    )
    return Bench(app, login.get_json()["access_token"], patient_id, seeded)


def time_requests(bench: Bench, repeat: int) -> dict[str, list[float]]:
    """Milliseconds per request through the whole app, JSON and HTML interleaved."""
    client = bench.app.test_client()
    url = f"/api/v1/patients/{bench.patient_id}/report"
    kinds = {"JSON report": {}, "HTML page": {"Accept": "text/html"}}
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(repeat + 1):  # the first round warms caches and is dropped
        for name, extra in kinds.items():
            started = time.perf_counter()
            response = client.get(url, headers={**bench.headers, **extra})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{name}: status {response.status_code}")
            samples[name].append(elapsed)
    return {name: values[1:] for name, values in samples.items()}


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log (it would print patient ids)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app under werkzeug's server on 127.0.0.1 (a free port), for real HTTP."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def fetch_page(base: str, bench: Bench) -> tuple[bytes, dict[str, str], float]:
    """What `curl -H 'Accept: text/html'` gets: the body, its headers and the time taken."""
    request = urllib.request.Request(
        f"{base}/api/v1/patients/{bench.patient_id}/report",
        headers={**bench.headers, "Accept": "text/html"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        headers = dict(response.headers.items())
    return body, headers, (time.perf_counter() - started) * 1000


# ---------------------------------------------------------------- the browser


class Recorder(http.server.ThreadingHTTPServer):
    """Serves the page at PAGE_PATH with the app's headers, and is Chromium's proxy for
    everything else: every request it receives is recorded; only the page is answered."""

    def __init__(self, page: bytes, headers: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.page, self.page_headers = page, headers
        self.seen: list[tuple[str, str]] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        url = self.path if "://" in self.path else self.server.origin + self.path
        self.server.seen.append(("GET", url))
        if url == self.server.origin + PAGE_PATH:
            self.send_response(200)
            for name in ("Content-Type", "Content-Security-Policy", "Cache-Control"):
                self.send_header(name, self.server.page_headers[name])
            self.send_header("Content-Length", str(len(self.server.page)))
            self.end_headers()
            self.wfile.write(self.server.page)
        else:
            self._refuse()

    def do_POST(self) -> None:
        self.server.seen.append(("POST", self.path))
        self._refuse()

    def do_CONNECT(self) -> None:
        self.server.seen.append(("CONNECT", self.path))
        self._refuse()

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class Run:
    """One Chromium run: what it was asked, how it ended, and what went wrong."""

    what: str
    output: Path
    seconds: float
    problems: list[str] = field(default_factory=list)


def chromium_binary() -> str:
    """Debian's chromium; its absence is a failure, not a skip."""
    found = shutil.which("chromium")
    if found is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    return found


def run_chromium(what: str, args: list[str], output: Path, recorder: Recorder, work: Path) -> Run:
    """Render the page once with a fresh profile, the recorder as proxy and a net log."""
    profile = Path(tempfile.mkdtemp(dir=work, prefix="profile-"))
    netlog = work / f"{what}-netlog.json"
    command = [
        chromium_binary(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--proxy-server={recorder.origin}",
        "--proxy-bypass-list=<-loopback>",  # loopback through the proxy too: all recorded
        f"--log-net-log={netlog}",
        *args,
        recorder.origin + PAGE_PATH,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    run = Run(what, output, time.perf_counter() - started)
    if done.returncode != 0:
        run.problems.append(f"chromium exited with {done.returncode}")
    for line in done.stderr.splitlines():
        if ":CONSOLE" in line or (":ERROR:" in line and not NOISE.search(line)):
            run.problems.append(f"chromium logged: {line.strip()[:300]}")
    asked = page_requests(netlog, recorder.origin)
    if asked != [recorder.origin + PAGE_PATH]:
        run.problems.append(f"the page asked for more than itself: {asked}")
    if not output.is_file() or output.stat().st_size == 0:
        run.problems.append(f"no {what} written")
    return run


def page_requests(netlog: Path, origin: str) -> list[str]:
    """Every URL Chromium's network stack started for the page: requests whose network
    isolation key is the page's site (the browser's own background requests have none)."""
    log = json.loads(netlog.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    site = origin.rsplit(":", 1)[0]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if params.get("network_isolation_key", "").split(" ")[0] == site or params.get(
            "initiator", ""
        ).startswith(site):
            urls.append(params["url"])
    return urls


def pdf_pages(path: Path) -> int:
    """Pages of a PDF as Chromium writes it (PDF 1.4, no object streams): its /Page
    objects, which must agree with the page tree's /Count."""
    data = path.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))
    counts = [int(n) for n in re.findall(rb"/Count\s+(\d+)", data)]
    if not data.startswith(b"%PDF-") or not counts or max(counts) != pages:
        return 0
    return pages


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Seed, time, serve, render, check; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="wiped first; default a temporary SQLite file")
    parser.add_argument("--out", type=Path, help="where the HTML, PNG and PDF go")
    parser.add_argument("--png", type=Path, help="also copy the screenshot here")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests of each kind")
    args = parser.parse_args(argv)
    chromium_binary()
    out = args.out or Path(tempfile.mkdtemp(prefix="report-page-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = build(fresh_database(args.database_url))
    engine = bench.app.extensions["moodtrack"].engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # fresh tables: give the planner their statistics
            conn.exec_driver_sql("ANALYZE")
    print(
        f"seeded in {time.perf_counter() - started:.1f} s on {engine.dialect.name}: "
        + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in bench.seeded.items())
    )
    for name, values in time_requests(bench, args.repeat).items():
        print(f"  {name:12s} {describe(values)}   ({args.repeat} requests, in process)")
    with served(bench.app) as base:
        page, headers, elapsed = fetch_page(base, bench)
    print(f"  HTML over HTTP: {len(page) / 1024:.0f} KiB in {elapsed:.0f} ms")
    (out / "report.html").write_bytes(page)
    return render(page, headers, out, args.png)


def render(page: bytes, headers: dict[str, str], out: Path, png_copy: Path | None) -> int:
    """Screenshot and PDF through Chromium; 0 when both are clean."""
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(page, headers)
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    work = Path(tempfile.mkdtemp(prefix="chromium-"))
    try:
        png, pdf = out / "report.png", out / "report.pdf"
        runs = [
            run_chromium(
                "png", [f"--screenshot={png}", "--window-size=900,1220"], png, recorder, work
            ),
            run_chromium(
                "pdf", [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"], pdf, recorder, work
            ),
        ]
    finally:
        recorder.shutdown()
        thread.join(timeout=10)
        recorder.server_close()
        shutil.rmtree(work, ignore_errors=True)
    pages = pdf_pages(pdf) if pdf.is_file() else 0
    if pages == 0:
        runs[-1].problems.append("the PDF has no pages")
    strays = [
        (m, u)
        for m, u in recorder.seen
        if u.startswith(recorder.origin) and not u.endswith(PAGE_PATH)
    ]
    if strays:
        runs[-1].problems.append(f"the proxy saw requests for the page's origin: {strays}")
    for run in runs:
        size = run.output.stat().st_size // 1024 if run.output.is_file() else 0
        print(f"  chromium {run.what}: {run.seconds:.1f} s, {run.output} ({size} KiB)")
    print(f"  PDF pages: {pages}")
    if png_copy is not None and png.is_file():
        shutil.copyfile(png, png_copy)
    problems = [p for run in runs for p in run.problems]
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print("OK: rendered, nothing requested but the page itself" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
