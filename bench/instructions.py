"""Instructions per request, counted by valgrind's callgrind: a figure that load does not move.

    .venv/bin/python -m bench.instructions                # about a minute
    .venv/bin/python -m bench.instructions --requests 50

Wall-clock figures (bench.throughput) swing with whatever else the machine runs; the number
of instructions the CPU executes for a request does not. For each scenario, a child Python
runs under ``valgrind --tool=callgrind --instr-atstart=no``: it builds the app in process on
a SQLite file (as bench.ingest does: token check, access check, validation, SQL, audit row,
log line, JSON), sends warm-up requests uninstrumented, then switches instrumentation on
for exactly ``--requests`` requests through Flask's test client and off again. The total
over those requests, divided by their number, is printed with its ratio to bare Flask:

    bare     GET /ping of bench/ceiling.py (no database, no auth)
    me       GET /api/v1/me, authenticated
    post     POST /api/v1/patients/me/mood-entries, a new entry each time
    trends   GET /api/v1/patients/me/trends?metric=mood&bucket=day over 600 entries

Instrumentation is switched with callgrind's client requests (valgrind/callgrind.h, compiled
here into a tiny shared library loaded with ctypes), so set-up is not counted.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCENARIOS = ("bare", "me", "post", "trends")
WARMUP = 20
PASSWORD = "instruction count passphrase 2026"
SWITCH_C = r"""
#include <valgrind/callgrind.h>
void measure_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void measure_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
"""


def build_switch(directory: Path) -> Path:
    """The shared library whose two functions start and stop callgrind's counting."""
    source = directory / "switch.c"
    source.write_text(SWITCH_C)
    library = directory / "libswitch.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    return library


def request_maker(scenario: str) -> Callable[[], Any]:
    """Set-up for ``scenario`` (not counted); returns one request that is counted."""
    if scenario == "bare":
        from bench.ceiling import app as bare

        bare_client = bare.test_client()
        return lambda: bare_client.get("/ping")
    from bench.common import bench_app, fresh_database, sign_up

    app = bench_app(fresh_database(None))
    client = app.test_client()
    sign_up(app, client, "patient@example.org", PASSWORD)
    login = {"email": "patient@example.org", "password": PASSWORD}
    token = client.post("/api/v1/auth/login", json=login).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    path = "/api/v1/patients/me/mood-entries"
    start = datetime.now(UTC) - timedelta(days=301)
    if scenario == "me":
        return lambda: client.get("/api/v1/me", headers=headers)
    if scenario == "trends":
        for day in range(600):
            moment = (start + timedelta(days=day * 0.5)).isoformat()
            body = {"id": str(uuid.uuid4()), "mood": day % 10 + 1, "occurred_at": moment}
            assert client.post(path, json=body, headers=headers).status_code == 201
        trends = "/api/v1/patients/me/trends?metric=mood&bucket=day"
        return lambda: client.get(trends, headers=headers)
    counter = iter(range(10**6))

    def post() -> Any:
        moment = (start + timedelta(minutes=next(counter))).isoformat()
        body = {"id": str(uuid.uuid4()), "mood": 5, "occurred_at": moment}
        return client.post(path, json=body, headers=headers)

    return post


def inner(scenario: str, requests: int, library: str) -> None:
    """Runs inside valgrind: set up, warm up, count ``requests`` requests."""
    switch = ctypes.CDLL(library)
    send = request_maker(scenario)
    for _ in range(WARMUP):
        assert send().status_code < 300
    answers = []
    switch.measure_start()
    for _ in range(requests):
        answers.append(send().status_code)
    switch.measure_stop()
    assert all(status < 300 for status in answers), answers


def count(scenario: str, requests: int, library: Path, directory: Path) -> float:
    """Instructions per request of ``scenario``, from a callgrind run in a child process."""
    out = directory / f"callgrind.{scenario}.%p"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--inner",
        scenario,
        "--requests",
        str(requests),
        "--library",
        str(library),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"{scenario} failed under valgrind:\n{run.stderr[-3000:]}")
    total = 0
    for dump in directory.glob(f"callgrind.{scenario}.*"):
        text = dump.read_text(errors="replace")
        if "Trigger: Client Request: measured" in text:
            total += int(re.search(r"^totals:\s+(\d+)", text, re.M).group(1))
    if total == 0:
        raise SystemExit(f"callgrind counted nothing for {scenario}")
    return total / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--inner", choices=SCENARIOS)
    parser.add_argument("--library")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.requests, args.library)
        return
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        library = build_switch(directory)
        figures = {s: count(s, args.requests, library, directory) for s in args.scenarios}
    bare = figures.get("bare")
    print(f"instructions per request (callgrind, in process, SQLite, {args.requests} requests)")
    for scenario, per_request in figures.items():
        ratio = f"{per_request / bare:6.1f}x bare" if bare else ""
        print(f"  {scenario:7} {per_request:14,.0f}  {ratio}")


if __name__ == "__main__":
    main()
