"""Throughput under gunicorn, measured with wrk, on PostgreSQL and on SQLite.

    apt-get install -y wrk                       # Debian's package
    .venv/bin/python -m bench.throughput         # about 5 minutes
    .venv/bin/python -m bench.throughput --rounds 5 --databases postgresql

For each database, the API is served exactly as the Docker image serves it (gunicorn
'api:create_app()', gthread workers, --worker-tmp-dir /dev/shm, production settings, JSON
request log at INFO, rate limits counted in Redis) on 127.0.0.1, and wrk drives, for a fixed
duration each:

    ceiling   GET /ping of bench/ceiling.py, a bare Flask JSON endpoint, same gunicorn flags
    me        GET /api/v1/me, authenticated
    post      POST /api/v1/patients/me/mood-entries, a new id and occurred_at per request,
              spread over as many patients as connections
    floor     the post's requests to bench/write_floor.py, a bare Flask app that only
              INSERTs one row and commits it on the same database: what a durable write
              costs here before any auth, validation, audit or logging
    fixed floor  the same to the same app's POST /insert-with-fixed-work: the floor plus
              what issue 16 says no write gives up (the caller's write counted in Redis,
              the caller read by primary key, an audit row in the same transaction, a JSON
              log line): the highest share of the floor any API write here can reach
    trends    GET /api/v1/patients/me/trends?metric=mood&bucket=day, 600 entries over 300 days
    read floor  GET /read of the same app: one row by primary key, what a token check reads

Every server runs from the start, and the measurements go in rounds (3 by default): in each,
the ceiling, then one database's measurements, then the ceiling again before the other's.
Each share is taken within its round and the verdicts use the median over the rounds, so
that neither the machine's drift in speed (a quarter, minute to minute, on a shared VM) nor
one run whose keep-alive connections all landed on one gunicorn worker decides a verdict.

Each run prints requests/s, p50 and p99 latency and CPU milliseconds per request by program
(the app's Python, PostgreSQL, Redis); then a table of medians and the lean-path goals
(issue 16): GET /me at 50 % of the ceiling, POST at 60 % of the INSERT + commit floor,
trends at twice the share of the ceiling they had when the goal was set. Only 127.0.0.1 is
contacted; the databases made here are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import psycopg

from bench.faults import BIN, HOST, PG_ADMIN, ROOT, Client, Server, free_port, pg_ready, sign_up
from tests.mailsink import MailSink

PATH_POST = "/api/v1/patients/me/mood-entries"
FIXED_WORK = "/insert-with-fixed-work"
PATH_TRENDS = "/api/v1/patients/me/trends?metric=mood&bucket=day"
PASSWORD = "throughput bench passphrase 2026"

# Shared by every script: threads numbered in setup(), answers counted by status.
DONE_LUA = r"""
local threads = {}
tid = 0
statuses = {}

setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local e = summary.errors
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
"""

GET_LUA = (
    """
wrk.method = "GET"
{auth}
"""
    + DONE_LUA
)

# One new entry per request: ids unique per run, thread and request; each wrk thread cycles
# over its own share of the patients, so concurrent requests mostly write for different ones.
POST_LUA = (
    r"""
local tokens = {TOKENS}
local nonce = "{NONCE}"
local base = {BASE}
local counter = 0

request = function()
  counter = counter + 1
  local share = math.floor(#tokens / {THREADS})
  local token = tokens[tid * share + (counter % share) + 1]
  local id = string.format("%s-%04x-4000-8000-%012x", nonce, tid, counter)
  local occurred = os.date("!%Y-%m-%dT%H:%M:%SZ", base + counter * {THREADS} + tid)
  local body = string.format(
    '{"id":"%s","occurred_at":"%s","mood":%d,"anxiety":%d,"note":"wrk"}',
    id, occurred, counter % 11, (counter * 7) % 11)
  return wrk.format("POST", "{PATH}", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
"""
    + DONE_LUA
)


def lua_list(items: list[str]) -> str:
    return "{" + ", ".join(f'"{i}"' for i in items) + "}"


def wrk(
    port: int, path: str, script: Path, *, duration: float, connections: int, threads: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://{HOST}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def cpu_seconds_by_program() -> dict[str, float]:
    """CPU seconds (user + system) used so far by every live process, summed per program:
    where a run's CPU went. "app" is gunicorn's processes (the master and its workers);
    wrk, which ends with its run, is not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            raw = (proc / "stat").read_text()
            command = (proc / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        program = "app" if b"gunicorn" in command else name.split(":")[0]
        totals[program] = totals.get(program, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> str:
    """Milliseconds of CPU per request by program, the largest first (programs above 1 %)."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(max(0.0, v) for v in used.values())
    if not requests or not total:
        return "nothing measured"
    shown = sorted((v, n) for n, v in used.items() if v / total >= 0.01)
    return ", ".join(f"{n} {v * 1000 / requests:.2f}" for v, n in reversed(shown))


@dataclass
class Target:
    """One thing measured: a server's port, the path wrk requests, and the script it runs
    (``script`` writes a fresh one for each run: a POST's ids must never repeat)."""

    name: str
    port: int
    path: str
    script: Callable[[], Path]


def measure(target: Target, args: argparse.Namespace, *, warm_up: bool) -> dict[str, Any]:
    """The measured run (after a warm-up run when ``warm_up``), printed as it ends."""
    common = {"connections": args.connections, "threads": args.wrk_threads}
    if warm_up:
        wrk(target.port, target.path, target.script(), duration=args.warmup, **common)
    before = cpu_seconds_by_program()
    result = wrk(target.port, target.path, target.script(), duration=args.duration, **common)
    result["cpu_ms"] = cpu_per_request(before, cpu_seconds_by_program(), result["requests"])
    result["name"] = target.name
    print(
        f"    {target.name:10} {result['rps']:6.0f} req/s  p50 {result['p50_us'] / 1000:6.1f} ms"
        f"  p99 {result['p99_us'] / 1000:6.1f} ms  answers {result['statuses']}"
        f"  socket errors/timeouts {result['errors'] - result['status']}"
        f"\n               CPU ms per request: {result['cpu_ms']}",
        flush=True,
    )
    return result


def server_env(
    database_url: str, workdir: Path, tag: str, redis_db: int, smtp_url: str
) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MOODTRACK_", "GUNICORN_"))},
        "MOODTRACK_ENV": "production",
        "DATABASE_URL": database_url,
        # Production refuses a key that is not random.
        "MOODTRACK_SIGNING_KEYS": f"tput={secrets.token_urlsafe(48)}",
        "MOODTRACK_TOTP_KEYS": f"tput={secrets.token_urlsafe(48)}",
        "MOODTRACK_SMTP_URL": smtp_url,
        "MOODTRACK_INSTANCE_PATH": str(workdir),
        # Accounts are made only during set-up, which is not measured: cheap hashing, which
        # production refuses without this override.
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "8192",
        "MOODTRACK_ARGON2_PARALLELISM": "1",
        "MOODTRACK_ALLOW_UNSAFE_ARGON2": "1",
        # Counted in Redis as in production, with limits this load does not reach.
        "MOODTRACK_RATELIMIT_STORAGE_URL": f"redis://{HOST}:6379/{redis_db}",
        "MOODTRACK_RATELIMIT_KEY_PREFIX": f"tput-{tag}",
        "MOODTRACK_RATELIMIT_WRITES_PER_USER": "100000000/minute",
        "MOODTRACK_RATELIMIT_LOGIN_PER_ADDRESS": "1000000/minute",
        "MOODTRACK_RATELIMIT_LOGIN_PER_ACCOUNT": "1000000/minute",
        "MOODTRACK_RATELIMIT_REGISTER_PER_ADDRESS": "1000000/minute",
    }


def patient(client: Client, sink: MailSink, email: str) -> str:
    sign_up(client, sink, email, PASSWORD)
    status, _, data = client.request(
        "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    if status != 200:
        raise RuntimeError(f"login answered {status}: {data[:200]!r}")
    return json.loads(data)["access_token"]


def seed_trend_data(client: Client, token: str) -> None:
    """600 entries over the last 300 days (two a day), through the batch endpoint."""
    now = datetime.now(UTC)
    entries = [
        {
            "occurred_at": (now - timedelta(days=300) + timedelta(hours=12 * i)).isoformat(),
            "mood": (i * 3) % 11,
            "anxiety": (i * 5) % 11,
            "sleep_hours": 7,
        }
        for i in range(600)
    ]
    for chunk in (entries[:300], entries[300:]):
        status, _, data = client.request(
            "POST", f"{PATH_POST}/batch", {"entries": chunk}, token=token
        )
        if status not in (200, 201, 207) or json.loads(data)["created"] != len(chunk):
            raise RuntimeError(f"seeding answered {status}: {data[:200]!r}")


def start_database(
    kind: str, args: argparse.Namespace, workdir: Path, tag: str, stack: ExitStack
) -> list[Target]:
    """The API and the floors' app serving ``kind``, set up for the measurements; what it
    started is stopped (and a PostgreSQL database dropped) when ``stack`` closes."""
    url = make_database(kind, args, workdir, tag, stack)
    sink = MailSink().start()
    stack.callback(sink.stop)
    env = server_env(url, workdir, tag, args.redis_db, sink.url)
    subprocess.run(
        [str(BIN / "moodtrack"), "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    api = start_server(env, workdir / f"gunicorn-{kind}.log", args, "api:create_app()", stack)
    # The same requests, bytes and all, to a bare Flask app: the floors (bench/write_floor.py).
    floors = start_server(
        env, workdir / f"gunicorn-floor-{kind}.log", args, "bench.write_floor:app", stack
    )
    setup = Client(api.port)
    me_token = patient(setup, sink, f"me-{tag}@example.org")
    trends_token = patient(setup, sink, f"trends-{tag}@example.org")
    seed_trend_data(setup, trends_token)
    writers = [patient(setup, sink, f"w{i}-{tag}@example.org") for i in range(args.connections)]
    if kind == "postgresql":
        # Statistics, as a running server has them (autovacuum analyzes a table once a tenth
        # of it changed): a database made a minute ago has none, and the planner then takes
        # every table for a few rows and sorts where an index would do.
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as database:
            database.execute("ANALYZE")

    def post(target: str) -> Callable[[], Path]:
        return post_script(workdir, writers, args.wrk_threads, target)

    # The order of each round: POST right beside its floor, as they are compared.
    return [
        Target("me", api.port, "/api/v1/me", get_script(workdir, me_token)),
        Target("post", api.port, PATH_POST, post(PATH_POST)),
        Target("floor", floors.port, "/insert", post("/insert")),
        Target("fixed floor", floors.port, FIXED_WORK, post(FIXED_WORK)),
        Target("trends", api.port, PATH_TRENDS, get_script(workdir, trends_token)),
        Target("read floor", floors.port, "/read", get_script(workdir, "")),
    ]


def make_database(
    kind: str, args: argparse.Namespace, workdir: Path, tag: str, stack: ExitStack
) -> str:
    """An empty database of ``kind`` for this run, as a URL; a PostgreSQL one is dropped
    when ``stack`` closes (unless --keep)."""
    if kind != "postgresql":
        return f"sqlite:///{workdir / 'throughput.db'}"
    db_name = f"moodtrack_tput_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    if not args.keep:
        stack.callback(drop_database, db_name)
    return f"postgresql://postgres@{HOST}:5432/{db_name}"


def get_script(workdir: Path, token: str) -> Callable[[], Path]:
    """A GET's wrk script, with ``token`` as its bearer token (none if empty)."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""

    def write() -> Path:
        path = workdir / "get.lua"
        path.write_text(GET_LUA.replace("{auth}", auth))
        return path

    return write


def post_script(
    workdir: Path, writers: list[str], wrk_threads: int, target: str
) -> Callable[[], Path]:
    """A POST's wrk script over ``writers``' tokens, written afresh for every run with a new
    nonce: no run may replay another's ids."""

    def write() -> Path:
        path = workdir / "post.lua"
        path.write_text(
            POST_LUA.replace("{TOKENS}", lua_list(writers))
            .replace("{NONCE}", uuid.uuid4().hex[:8])
            .replace("{BASE}", str(int(time.time()) - 360 * 86400))
            .replace("{THREADS}", str(wrk_threads))
            .replace("{PATH}", target)
        )
        return path

    return write


def start_server(
    env: dict[str, str], log: Path, args: argparse.Namespace, target: str, stack: ExitStack
) -> Server:
    server = Server(free_port(), env, log, args.workers, args.threads, target=target)
    stack.callback(server.stop)
    server.start()
    return server


def drop_database(db_name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def start_ceiling(args: argparse.Namespace, workdir: Path, stack: ExitStack) -> Target:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODTRACK_", "GUNICORN_"))}
    server = start_server(env, workdir / "gunicorn-ceiling.log", args, "bench.ceiling:app", stack)
    return Target("ceiling", server.port, "/ping", get_script(workdir, ""))


# One round: per database, the ceiling and then that database's measurements.
Round = dict[str, dict[str, dict[str, Any]]]


def run_rounds(
    ceiling: Target, blocks: dict[str, list[Target]], args: argparse.Namespace
) -> list[Round]:
    """``args.rounds`` rounds, each measuring the ceiling right before every database's
    block. Each share is taken within its round: this machine's speed drifts by a quarter
    from one minute to the next (other tenants), and a share of a ceiling measured minutes
    earlier would measure the drift as much as the code."""
    rounds: list[Round] = []
    for number in range(1, args.rounds + 1):
        print(f"  round {number} of {args.rounds}", flush=True)
        this: Round = {}
        for kind, targets in blocks.items():
            print(
                f"   {kind}: gunicorn {args.workers} workers x {args.threads} threads", flush=True
            )
            this[kind] = {
                t.name: measure(t, args, warm_up=number == 1) for t in [ceiling, *targets]
            }
        rounds.append(this)
    return rounds


def shares(rounds: list[Round], kind: str, name: str, reference: str = "ceiling") -> list[float]:
    """``name``'s requests/s as a share of ``reference``'s, in each round."""
    return [r[kind][name]["rps"] / r[kind][reference]["rps"] for r in rounds]


def table(rounds: list[Round]) -> str:
    rows = [
        "| database | endpoint | requests/s (median) | p50 ms | p99 ms | share of ceiling "
        "(median) | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in rounds[0]:
        for name in rounds[0][kind]:
            runs = [r[kind][name] for r in rounds]
            rows.append(
                f"| {kind} | {LABELS[name]} | {median(r['rps'] for r in runs):.0f} | "
                f"{median(r['p50_us'] for r in runs) / 1000:.1f} | "
                f"{median(r['p99_us'] for r in runs) / 1000:.1f} | "
                f"{100 * median(shares(rounds, kind, name)):.0f} % | "
                f"{sum(r['errors'] for r in runs)} |"
            )
    return "\n".join(rows)


# The lean-path goals (issue 16). Trends' "twice today's requests/s" is kept as a share of
# the ceiling, so that it reads the same on a faster or slower machine: on the day it was
# set, trends of 600 entries made 294 req/s against a ceiling of 5,748 (5.1 %).
TRENDS_WHEN_SET = 294 / 5748


def verdicts(rounds: list[Round], kind: str) -> list[str]:
    """Each goal, its median share over the rounds (each round's in brackets), and whether
    the median holds."""
    goals = [
        ("GET /me", shares(rounds, kind, "me"), 0.5, "of the ceiling"),
        ("POST", shares(rounds, kind, "post", "floor"), 0.6, "of the INSERT + commit floor"),
        ("trends", shares(rounds, kind, "trends"), 2 * TRENDS_WHEN_SET, "of the ceiling"),
    ]

    def line(what: str, values: list[float]) -> str:
        each = ", ".join(f"{100 * v:.1f}" for v in values)
        return f"{100 * median(values):.1f} % {what} (rounds: {each})"

    lines = [
        f"{name} is {line(what, values)}: "
        f"{'meets' if median(values) >= goal else 'MISSES'} {100 * goal:.1f} %"
        for name, values, goal, what in goals
    ]
    # Not goals: how far the floors with the fixed work themselves reach, and the API's
    # requests against them.
    lines.append(
        f"(the fixed-work floor is "
        f"{line('of the INSERT + commit floor', shares(rounds, kind, 'fixed floor', 'floor'))})"
    )
    lines.append(
        f"(POST is {line('of the fixed-work floor', shares(rounds, kind, 'post', 'fixed floor'))})"
    )
    lines.append(
        f"(the read floor is {line('of the ceiling', shares(rounds, kind, 'read floor'))})"
    )
    lines.append(
        f"(GET /me is {line('of the read floor', shares(rounds, kind, 'me', 'read floor'))})"
    )
    return lines


LABELS = {
    "ceiling": "bare Flask `GET /ping` (ceiling)",
    "me": "`GET /me`",
    "post": "`POST` mood entry",
    "trends": "`GET` trends (600 entries)",
    "floor": "bare Flask `POST`: one INSERT + commit",
    "fixed floor": "bare Flask `POST`: rate limit, caller read, INSERT, audit INSERT, commit",
    "read floor": "bare Flask `GET`: one row by primary key",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the first")
    parser.add_argument("--rounds", type=int, default=3, help="shares are their median")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (Dockerfile: 4)")
    parser.add_argument("--threads", type=int, default=4, help="threads each (Dockerfile: 4)")
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep databases, logs and scripts")
    args = parser.parse_args()
    if args.connections % args.wrk_threads:
        parser.error("--connections must be a multiple of --wrk-threads")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if "postgresql" in kinds and not pg_ready():
        print("PostgreSQL is not running on 127.0.0.1:5432", file=sys.stderr)
        return 1

    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="moodtrack-throughput-"))
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
        f"wrk -t{args.wrk_threads} -c{args.connections}, {args.rounds} rounds of "
        f"{args.duration:g} s each (a {args.warmup:g} s warm-up before the first)",
        flush=True,
    )
    with ExitStack() as stack:
        ceiling = start_ceiling(args, workdir, stack)
        blocks = {kind: start_database(kind, args, workdir, tag, stack) for kind in kinds}
        rounds = run_rounds(ceiling, blocks, args)
    print()
    print(table(rounds))
    print()
    status = 0
    for kind in kinds:
        for line in verdicts(rounds, kind):
            print(f"{kind}: {line}")
    if any(run["errors"] for r in rounds for block in r.values() for run in block.values()):
        print("some requests failed (see the errors column)")
        status = 1
    if args.keep:
        print(f"kept: {workdir}")
    else:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main())
