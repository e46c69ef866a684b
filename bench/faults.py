"""Faults and concurrency against the real server: gunicorn (3 workers) on PostgreSQL.

    .venv/bin/python -m bench.faults            # about a minute; exit status 0 = all held

Bounded (a global deadline), talks only to 127.0.0.1, and cleans up after itself: it stops
the gunicorn it started, drops the database it created, and always leaves PostgreSQL
running. Three phases on one server and one database:

(a) 20 client threads post 5,000 mood entries with client-chosen ids; 30 % of them are sent
    again with the same id and body (half at once by the same client, half by another
    client, possibly concurrently) -> exactly 5,000 rows, one 201 per id, no 5xx.
(b) gunicorn (master and workers) is killed with SIGKILL mid-load and started again; the
    clients retry what failed with the same id -> every acknowledged (201/200) entry is
    stored, and so is every entry in the end, once.
(c) PostgreSQL is stopped mid-load and started again a few seconds later, gunicorn left
    alone -> requests during the outage answer 503 problem+json with Retry-After within a
    few seconds (the maximum latency is printed), the service recovers by itself, and no
    acknowledged entry is lost.

Needs: PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres; the script may restart it,
with ``pg_ctlcluster``, so it must run as root or postgres), Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.mailsink import MailSink, code_in

HOST = "127.0.0.1"
PG_ADMIN = f"postgresql://postgres@{HOST}:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLIENT_TIMEOUT = 10.0  # seconds; a request slower than this counts as a hang
OUTAGE_LATENCY_LIMIT = 5.0  # "within a few seconds"
PATIENTS = 10
DEADLINE = 240.0  # a hard bound on the whole run, in seconds (it takes about 150)
PASSWORD = "faults bench passphrase 2026"


def pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_version(), "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pg_ready() -> bool:
    result = subprocess.run(
        ["pg_isready", "-q", "-h", HOST, "-p", "5432"], capture_output=True, timeout=10
    )
    return result.returncode == 0


def wait_for(check: Any, timeout: float, what: str) -> float:
    """Poll ``check`` until true; seconds it took. Raises after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    port: int
    env: dict[str, str]
    log_path: Path
    workers: int = 3
    threads: int = 4
    target: str = "api:create_app()"
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """gunicorn as the Dockerfile's CMD runs it (tests/test_deploy.py holds them equal)."""
        return [
            str(BIN / "gunicorn"),
            self.target,
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-tmp-dir",
            "/dev/shm",
            "--graceful-timeout",
            "20",
            "--timeout",
            "30",
            "--preload",
        ]

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: SIGKILL reaches the workers
        )
        log.close()
        wait_for(self.healthy, 30, "gunicorn")

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {self.process.returncode}; see {self.log_path}"
            )
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def pids(self) -> set[int]:
        if self.process is None:
            return set()
        out = subprocess.run(
            ["pgrep", "-g", str(self.process.pid)], capture_output=True, text=True, timeout=10
        ).stdout
        return {int(p) for p in out.split()}

    def kill(self) -> None:
        """SIGKILL the master and every worker (the whole process group)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=25)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


# --------------------------------------------------------------------------- client


@dataclass
class Result:
    phase: str
    entry_id: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (connection refused/reset, timeout)
    content_type: str = ""
    retry_after: str | None = None
    error: str = ""

    @property
    def latency(self) -> float:
        return self.ended - self.started


class Client:
    """One keep-alive connection to the server, reopened after any failure; over TLS with
    ``tls``, from the loopback address ``source`` when given (bench.topology uses both)."""

    def __init__(
        self, port: int, *, tls: ssl.SSLContext | None = None, source: str | None = None
    ) -> None:
        self.port = port
        self.tls = tls
        self.source = source
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        source = (self.source, 0) if self.source else None
        if self.tls is not None:
            return http.client.HTTPSConnection(
                HOST, self.port, timeout=CLIENT_TIMEOUT, source_address=source, context=self.tls
            )
        return http.client.HTTPConnection(
            HOST, self.port, timeout=CLIENT_TIMEOUT, source_address=source
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = self.connect()
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self.conn.request(
                method, path, body=None if body is None else json.dumps(body), headers=headers
            )
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@dataclass
class Entry:
    id: str
    patient: int
    body: dict[str, Any]


@dataclass
class Run:
    port: int
    tokens: list[str]
    stop_at: float
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: set[str] = field(default_factory=set)
    created: Counter[str] = field(default_factory=Counter)
    # Keyword arguments of each client thread's Client (TLS, source address).
    client_options: dict[str, Any] = field(default_factory=dict)

    def post(self, client: Client, phase: str, entry: Entry) -> Result:
        started = time.monotonic()
        try:
            status, headers, _ = client.request(
                "POST",
                "/api/v1/patients/me/mood-entries",
                entry.body,
                token=self.tokens[entry.patient],
            )
        except (OSError, http.client.HTTPException) as exc:
            result = Result(
                phase, entry.id, started, time.monotonic(), None, error=type(exc).__name__
            )
        else:
            result = Result(
                phase,
                entry.id,
                started,
                time.monotonic(),
                status,
                headers.get("content-type", ""),
                headers.get("retry-after"),
            )
        with self.lock:
            self.results.append(result)
            if result.status in (200, 201):
                self.acked.add(entry.id)
            if result.status == 201:
                self.created[entry.id] += 1
        return result

    def deliver(self, client: Client, phase: str, entry: Entry) -> bool:
        """Post until acknowledged (same id and body every time) or the deadline; acked?"""
        while time.monotonic() < self.stop_at:
            result = self.post(client, phase, entry)
            if result.status in (200, 201):
                return True
            if result.status is not None and result.status < 500:
                return False  # a violation; reported from the results
            # No answer or 5xx: the phone sends the same entry again (5xx are still reported).
            time.sleep(0.2 if result.status is None else 0.25)
        return False


def make_entries(count: int, start: datetime) -> list[Entry]:
    out = []
    for i in range(count):
        patient = i % PATIENTS
        occurred = start + timedelta(minutes=7 * i + random.randint(0, 5))
        body = {
            "id": str(uuid.uuid4()),
            "occurred_at": occurred.isoformat(),
            "mood": random.randint(0, 10),
            "anxiety": random.randint(0, 10),
            "note": f"faults {i}",
        }
        out.append(Entry(body["id"], patient, body))
    return out


def drive(
    run: Run,
    phase: str,
    entries: list[Entry],
    clients: int,
    *,
    retry_share: float = 0.0,
    on_progress: Any = None,
) -> None:
    """``clients`` threads deliver ``entries``; a share of them is posted a second time."""
    work: queue.Queue[tuple[Entry, bool]] = queue.Queue()
    for entry in entries:
        work.put((entry, False))
    replays = {e.id for e in random.sample(entries, round(retry_share * len(entries)))}
    pending = [len(entries) + len(replays)]
    pending_lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        client = Client(run.port, **run.client_options)
        while time.monotonic() < run.stop_at and not done.is_set():
            try:
                entry, is_replay = work.get(timeout=0.2)
            except queue.Empty:
                continue
            run.deliver(client, phase, entry)
            finished = 1
            if not is_replay and entry.id in replays:
                if random.random() < 0.5:
                    run.deliver(client, phase, entry)  # the phone retries at once
                    finished += 1
                else:
                    work.put((entry, True))  # another client sends it, maybe concurrently
            with pending_lock:
                pending[0] -= finished
                if pending[0] <= 0:
                    done.set()
            if on_progress is not None:
                on_progress()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, run.stop_at - time.monotonic() + 5))


# --------------------------------------------------------------------------- checks


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)


def stored_ids(database_url: str, patient_ids: list[str]) -> list[str]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT id::text FROM mood_entries WHERE patient_id = ANY(%s::uuid[])", [patient_ids]
        ).fetchall()
    return [r[0] for r in rows]


def summarise(results: list[Result]) -> str:
    counts = Counter(r.status if r.status is not None else r.error for r in results)
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))


def account_email(index: int, run_tag: str) -> str:
    return f"faults-{run_tag}-{index}@example.org"


def sign_up(client: Client, sink: MailSink, email: str, password: str) -> None:
    """A patient account over HTTP: sign-up, the emailed code (from ``sink``), confirm."""
    before = sink.count(email)
    status, _, body = client.request(
        "POST",
        "/api/v1/auth/register",
        {"email": email, "password": password, "display_name": "B", "timezone": "UTC"},
    )
    if status != 202:
        raise RuntimeError(f"register answered {status}: {body[:200]!r}")
    code = code_in(sink.wait_for(email, after=before, timeout=30))
    status, _, body = client.request(
        "POST",
        "/api/v1/auth/register/confirm",
        {"email": email, "code": code, "password": password},
    )
    if status != 201:
        raise RuntimeError(f"confirm answered {status}: {body[:200]!r}")


def register(client: Client, sink: MailSink, index: int, run_tag: str) -> tuple[str, str]:
    email = account_email(index, run_tag)
    password = PASSWORD
    sign_up(client, sink, email, password)
    status, _, body = client.request(
        "POST", "/api/v1/auth/login", {"email": email, "password": password}
    )
    if status != 200:
        raise RuntimeError(f"login answered {status}: {body[:200]!r}")
    token = json.loads(body)["access_token"]
    status, _, body = client.request("GET", "/api/v1/me", token=token)
    return token, json.loads(body)["id"]


# --------------------------------------------------------------------------- phases


def phase_a(
    run: Run, checks: Checks, args: argparse.Namespace, db_url: str, pids: list[str]
) -> list[Entry]:
    print(f"(a) {args.clients} clients post {args.entries} entries, 30 % replayed", flush=True)
    entries = make_entries(args.entries, datetime.now(UTC) - timedelta(days=330))
    began = time.monotonic()
    drive(run, "a", entries, args.clients, retry_share=0.30)
    took = time.monotonic() - began
    mine = [r for r in run.results if r.phase == "a"]
    print(f"  {len(mine)} requests in {took:.1f} s ({len(mine) / took:.0f}/s): {summarise(mine)}")
    stored = stored_ids(db_url, pids)
    ids = {e.id for e in entries}
    checks.expect(
        len(stored) == args.entries, f"exactly {args.entries} rows stored (found {len(stored)})"
    )
    checks.expect(set(stored) == ids, "the stored ids are the posted ids")
    checks.expect(
        not [r for r in mine if r.status is None or r.status >= 500], "no 5xx, no dropped request"
    )
    checks.expect(all(r.status in (200, 201) for r in mine), "every answer is 201 or 200")
    ones = [run.created[i] for i in ids]
    checks.expect(all(c == 1 for c in ones), "exactly one 201 per id (every replay answered 200)")
    replays = len(mine) - args.entries
    checks.expect(
        replays == round(0.3 * args.entries),
        f"{replays} replays sent ({round(0.3 * args.entries)} planned)",
    )
    return entries


def phase_b(
    run: Run,
    checks: Checks,
    args: argparse.Namespace,
    server: Server,
    db_url: str,
    pids: list[str],
    before: list[Entry],
) -> list[Entry]:
    count = args.fault_entries
    print(
        f"(b) SIGKILL gunicorn (master + workers) mid-load of {count} entries, restart", flush=True
    )
    entries = make_entries(count, datetime.now(UTC) - timedelta(days=200))
    acked_before = len(run.acked)
    fired = threading.Event()
    info: dict[str, Any] = {}

    def saboteur() -> None:
        # Once a third of this phase is acknowledged, kill; restart after a pause.
        limit = time.monotonic() + 60
        while len(run.acked) - acked_before < count // 3 and time.monotonic() < limit:
            time.sleep(0.01)
        info["pids"] = server.pids()
        info["killed_at"] = time.monotonic()
        server.kill()
        fired.set()
        time.sleep(1.0)
        server.start()
        info["back_at"] = time.monotonic()

    t = threading.Thread(target=saboteur, daemon=True)
    t.start()
    drive(run, "b", entries, args.clients)
    t.join(timeout=60)
    mine = [r for r in run.results if r.phase == "b"]
    print(f"  {len(mine)} requests: {summarise(mine)}")
    checks.expect(
        fired.is_set() and "back_at" in info,
        f"killed {len(info.get('pids', ()))} processes with SIGKILL and restarted",
    )
    if "back_at" in info:
        down = info["back_at"] - info["killed_at"]
        print(f"  down for {down:.1f} s (kill, 1 s pause, start to /healthz)")
    failed = [r for r in mine if r.status is None]
    checks.expect(bool(failed), f"the kill was felt: {len(failed)} requests got no answer")
    stored = set(stored_ids(db_url, pids))
    acked = {e.id for e in entries} & run.acked
    lost = acked - stored
    checks.expect(
        not lost, f"every acknowledged entry is stored ({len(acked)} acked, {len(lost)} lost)"
    )
    checks.expect(
        not [r for r in mine if r.status is not None and r.status >= 500], "no 5xx answer"
    )
    total = len(before) + count
    checks.expect(
        len(stored) == total, f"after clients retried: exactly {total} rows (found {len(stored)})"
    )
    return entries


def phase_c(
    run: Run,
    checks: Checks,
    args: argparse.Namespace,
    server: Server,
    db_url: str,
    pids: list[str],
    before: int,
) -> None:
    count = args.fault_entries
    print(
        f"(c) stop PostgreSQL for {args.outage:.0f} s mid-load of {count} entries, then start",
        flush=True,
    )
    entries = make_entries(count, datetime.now(UTC) - timedelta(days=100))
    acked_before = len(run.acked)
    gunicorn_pids = server.pids()
    info: dict[str, float] = {}
    probes: list[Result] = []

    def saboteur() -> None:
        limit = time.monotonic() + 60
        while len(run.acked) - acked_before < count // 4 and time.monotonic() < limit:
            time.sleep(0.01)
        info["stop_at"] = time.monotonic()
        pg_ctl("stop")
        info["stopped_at"] = time.monotonic()
        time.sleep(args.outage)
        info["start_at"] = time.monotonic()
        pg_ctl("start")
        wait_for(pg_ready, 30, "PostgreSQL")
        info["ready_at"] = time.monotonic()

    def prober() -> None:
        # Reads during the outage too: GET /me and /readyz.
        client = Client(run.port)
        while "ready_at" not in info and time.monotonic() < run.stop_at:
            for path in ("/api/v1/me", "/readyz"):
                started = time.monotonic()
                try:
                    status, headers, _ = client.request("GET", path, token=run.tokens[0])
                    probes.append(
                        Result(
                            "c-read",
                            path,
                            started,
                            time.monotonic(),
                            status,
                            headers.get("content-type", ""),
                            headers.get("retry-after"),
                        )
                    )
                except (OSError, http.client.HTTPException) as exc:
                    probes.append(
                        Result(
                            "c-read",
                            path,
                            started,
                            time.monotonic(),
                            None,
                            error=type(exc).__name__,
                        )
                    )
            time.sleep(0.1)

    sab = threading.Thread(target=saboteur, daemon=True)
    probe = threading.Thread(target=prober, daemon=True)
    sab.start()
    probe.start()
    drive(run, "c", entries, args.clients)
    sab.join(timeout=90)
    probe.join(timeout=30)
    mine = [r for r in run.results if r.phase == "c"]
    print(f"  {len(mine)} writes: {summarise(mine)}; {len(probes)} reads: {summarise(probes)}")
    checks.expect("ready_at" in info, "PostgreSQL stopped and started again")
    if "ready_at" not in info:
        return
    stopping = info["stopped_at"] - info["stop_at"]
    down = info["start_at"] - info["stopped_at"]
    starting = info["ready_at"] - info["start_at"]
    print(f"  stop took {stopping:.1f} s, down {down:.1f} s, start to ready {starting:.1f} s")
    # Every request needs the database, so a 2xx for one sent after PostgreSQL had stopped
    # was served after it came back. Not "sent after our readiness poll saw it": the app may
    # finish the whole load before that poll does (it did once POST got faster).
    after = [r for r in mine + probes if r.started > info["stopped_at"]]
    first_ok = min((r.ended for r in after if r.status in (200, 201)), default=None)
    # The outage: from the stop until the service answered again (or our poll saw PostgreSQL
    # ready, if that came first).
    back = info["ready_at"] if first_ok is None else min(first_ok, info["ready_at"])
    window = [r for r in mine + probes if r.ended >= info["stop_at"] and r.started <= back]
    errors = [r for r in mine + probes if r.status is None or r.status >= 500]
    print(f"  during the outage: {len(window)} requests: {summarise(window)}")
    max_latency = max((r.latency for r in window), default=0.0)
    print(f"  max latency during the outage: {max_latency * 1000:.0f} ms")
    checks.expect(any(r.status == 503 for r in window), "the outage was seen (some 503s)")
    bad = Counter(
        r.status if r.status is not None else r.error
        for r in errors
        if not (
            r.status == 503
            and r.content_type.startswith("application/problem+json")
            and r.retry_after
        )
    )
    checks.expect(
        not bad, f"every error is 503 problem+json with Retry-After (others: {dict(bad)})"
    )
    checks.expect(
        max_latency < OUTAGE_LATENCY_LIMIT,
        f"no hang: every request during the outage answered within {OUTAGE_LATENCY_LIMIT:.0f} s",
    )
    checks.expect(
        first_ok is not None, "the service recovered by itself (2xx after PostgreSQL is back)"
    )
    if first_ok is not None:
        print(
            f"  first 2xx {first_ok - info['start_at']:.2f} s after PostgreSQL was started "
            f"(our readiness poll saw it ready after {starting:.2f} s)"
        )
    checks.expect(server.pids() == gunicorn_pids, "gunicorn was not restarted (same processes)")
    stored = set(stored_ids(db_url, pids))
    acked = {e.id for e in entries} & run.acked
    lost = acked - stored
    checks.expect(
        not lost, f"every acknowledged entry is stored ({len(acked)} acked, {len(lost)} lost)"
    )
    total = before + count
    checks.expect(
        len(stored) == total, f"after clients retried: exactly {total} rows (found {len(stored)})"
    )


# --------------------------------------------------------------------------- main


def server_env(
    db_url: str, workdir: Path, tag: str, redis_db: int, *, smtp_url: str
) -> dict[str, str]:
    """gunicorn's environment: production settings, with cheap hashing and high limits."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MOODTRACK_", "GUNICORN_"))},
        "MOODTRACK_ENV": "production",
        "DATABASE_URL": db_url,
        # Production refuses a key that is not random.
        "MOODTRACK_SIGNING_KEYS": f"faults={secrets.token_urlsafe(48)}",
        "MOODTRACK_TOTP_KEYS": f"faults={secrets.token_urlsafe(48)}",
        # Sign-up codes go to an SMTP server of this process (tests.mailsink).
        "MOODTRACK_SMTP_URL": smtp_url,
        "MOODTRACK_INSTANCE_PATH": str(workdir),
        "MOODTRACK_LOG_LEVEL": "WARNING",
        # Accounts are made during set-up only: cheap hashing, which production refuses
        # without this override.
        "MOODTRACK_ARGON2_TIME_COST": "1",
        "MOODTRACK_ARGON2_MEMORY_KIB": "8192",
        "MOODTRACK_ARGON2_PARALLELISM": "1",
        "MOODTRACK_ALLOW_UNSAFE_ARGON2": "1",
        "MOODTRACK_RATELIMIT_STORAGE_URL": f"redis://{HOST}:6379/{redis_db}",
        "MOODTRACK_RATELIMIT_KEY_PREFIX": f"faults-{tag}",
        # The production limits would turn this load into 429s; the load is the point here.
        "MOODTRACK_RATELIMIT_WRITES_PER_USER": "1000000/minute",
        "MOODTRACK_RATELIMIT_LOGIN_PER_ADDRESS": "1000000/minute",
        "MOODTRACK_RATELIMIT_REGISTER_PER_ADDRESS": "1000000/minute",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--fault-entries", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--outage", type=float, default=4.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    args = parser.parse_args()

    began = time.monotonic()
    checks = Checks()
    tag = uuid.uuid4().hex[:8]
    db_name = f"moodtrack_faults_{tag}"
    db_url = f"postgresql://postgres@{HOST}:5432/{db_name}"
    workdir = Path(tempfile.mkdtemp(prefix="moodtrack-faults-"))
    sink = MailSink().start()
    env = server_env(db_url, workdir, tag, args.redis_db, smtp_url=sink.url)
    server = Server(free_port(), env, workdir / "gunicorn.log", args.workers, args.threads)
    created_db = False
    try:
        if not pg_ready():
            raise RuntimeError("PostgreSQL is not running on 127.0.0.1:5432")
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        created_db = True
        subprocess.run(
            [str(BIN / "moodtrack"), "db", "upgrade"], cwd=ROOT, env=env, check=True, timeout=120
        )
        server.start()
        print(
            f"gunicorn {args.workers} workers x {args.threads} threads on {HOST}:{server.port}, "
            f"database {db_name}",
            flush=True,
        )
        setup = Client(server.port)
        accounts = [register(setup, sink, i, tag) for i in range(PATIENTS)]
        run = Run(server.port, [a[0] for a in accounts], began + DEADLINE)
        pids = [a[1] for a in accounts]
        a = phase_a(run, checks, args, db_url, pids)
        b = phase_b(run, checks, args, server, db_url, pids, a)
        phase_c(run, checks, args, server, db_url, pids, len(a) + len(b))
        checks.expect(
            time.monotonic() < run.stop_at, f"finished inside the {DEADLINE:.0f} s budget"
        )
    except Exception as exc:  # an error of the harness or of the service: a failure either way
        checks.expect(False, f"run aborted: {type(exc).__name__}: {exc}")
    finally:
        server.stop()
        sink.stop()
        if not pg_ready():
            print("  PostgreSQL is down: starting it", flush=True)
            try:
                pg_ctl("start")
            except subprocess.CalledProcessError as exc:
                print(f"  pg_ctlcluster start failed: {exc.stderr!r}", flush=True)
            try:
                wait_for(pg_ready, 60, "PostgreSQL")
            except RuntimeError as exc:
                checks.expect(False, str(exc))
        if created_db and not args.keep:
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            except psycopg.Error as exc:
                print(f"  could not drop {db_name}: {exc}", flush=True)
        log = server.log_path
        if log.exists():
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            errors = [ln for ln in tail if '"level":"error"' in ln or "Traceback" in ln]
            where = log if args.keep else "removed"
            print(f"gunicorn log: {len(tail)} lines, {len(errors)} errors ({where})")
            for line in errors[:5]:
                print(f"  {line[:300]}")
            if not args.keep:
                log.unlink()
                workdir.rmdir() if not any(workdir.iterdir()) else None
    print(f"took {time.monotonic() - began:.0f} s")
    if checks.failures:
        print(f"FAILED: {len(checks.failures)} expectation(s)")
        for failure in checks.failures:
            print(f"  - {failure}")
        return 1
    print("all expectations held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
