"""The production topology on this machine, without Docker, checked end to end.

    .venv/bin/python -m bench.topology          # about 2 minutes; exit status 0 = all held

What deploy/compose.yaml runs, from the same files: Debian's nginx on deploy/nginx.conf
(only its TEMPLATE lines changed: addresses, ports, a self-signed certificate made here),
two gunicorn instances started as the Docker image starts them, one `moodtrack worker`, a
scratch database on the machine's PostgreSQL (migrated as the owner, then served as the
restricted role moodtrack_app, as compose does) and Redis under a key prefix of its own.
Every moodtrack process gets compose's environment for the app, the secrets an operator's
moodtrack.env would hold, and the few overrides printed at the start. Then:

(1) compose.yaml and nginx.conf agree with what runs here (mount, ports, networks, env).
(2) X-Forwarded-For: a client's own header does not change the address its limits and
    audit rows are counted under; the real address (not nginx's) is what the app sees.
(3) Rate limits count once for both instances (the per-account login limit, in Redis).
(4) A PHQ-9 with a positive item 9, posted through the proxy, reaches a webhook receiver
    through the worker.
(5) 50 slow clients (headers or bodies trickled, no auth) against one instance directly
    (it stalls) and through the proxy (/healthz and an authenticated GET stay fast).
(6) The proxy's own refusals (413, 414) are problem+json, and its body limit is the app's.
(7) One instance SIGKILLed under concurrent authenticated writes (client-chosen ids,
    retried on 5xx): the proxy routes around it, no acknowledged write is lost, clients see
    at most one 502 per request in flight at the kill, and the instance rejoins.

Needs nginx and openssl (Debian packages; nginx runs as a plain process with its own
prefix, never as the system service), PostgreSQL on 127.0.0.1:5432 (user postgres, trust)
and Redis on 127.0.0.1:6379. Talks only to loopback addresses: clients connect to
127.0.0.1 from a few 127.0.0.x source addresses so the proxy sees distinct clients. Never
stops PostgreSQL or Redis; drops its database and Redis keys at the end.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyotp
import redis
import yaml
from limits import parse_many

from api import MAX_BODY_BYTES
from api.config import RATE_LIMIT_VARIABLES
from bench.faults import (
    BIN,
    HOST,
    PASSWORD,
    PATIENTS,
    PG_ADMIN,
    ROOT,
    Checks,
    Client,
    Run,
    Server,
    account_email,
    drive,
    free_port,
    make_entries,
    pg_ready,
    register,
    stored_ids,
    summarise,
    wait_for,
)
from tests.delivery_harness import stop as stop_process
from tests.mailsink import MailSink
from tests.webhook_receiver import Receiver

DEPLOY = ROOT / "deploy"
DEADLINE = 280.0  # seconds for the whole run (it takes about 120)
PROBE_TIMEOUT = 3.0  # a probe not answered by then counts as stalled
SLOW_CLIENTS = 50
LOAD_CLIENTS = 16
LOAD_ENTRIES = 3000
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/me"
# Loopback source addresses, one per kind of client (all of 127.0.0.0/8 is this machine).
SETUP_ADDRESS = "127.0.0.1"
LIMITS_ADDRESS = "127.0.0.21"
FORWARDED_ADDRESS = "127.0.0.31"
DIRECT_ADDRESS = "127.0.0.32"
SLOW_ADDRESS = "127.0.0.41"
LOAD_ADDRESS = "127.0.0.51"
# Forged client addresses (documentation ranges, RFC 5737).
FORGED_THROUGH_PROXY = "203.0.113."
FORGED_DIRECT = "192.0.2.9"
TEMPLATE_LINES = 4

# What the nginx image's own nginx.conf puts around conf.d/*.conf: process settings and
# temp paths (here: this run's directory). Every directive that matters is in the site file.
MAIN_CONF = """worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log notice;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {workdir}/nginx-body;
    proxy_temp_path {workdir}/nginx-proxy;
    fastcgi_temp_path {workdir}/nginx-fastcgi;
    uwsgi_temp_path {workdir}/nginx-uwsgi;
    scgi_temp_path {workdir}/nginx-scgi;
    include {workdir}/site.conf;
}}
"""


# --------------------------------------------------------------------------- files


def read_compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def render_site(text: str, *, upstreams: list[int], port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with its TEMPLATE lines pointed at this run's processes."""
    if len(re.findall(r";\s+# TEMPLATE", text)) != TEMPLATE_LINES:
        raise RuntimeError("nginx.conf's TEMPLATE lines changed: update bench.topology")
    steps = [
        (
            r"^( *)server app:8000 (.*)$",
            lambda m: "\n".join(f"{m[1]}server {HOST}:{p} {m[2]}" for p in upstreams),
        ),
        (r"listen 8443 ssl;", lambda _m: f"listen {HOST}:{port} ssl;"),
        (r"/etc/nginx/tls/fullchain\.pem", lambda _m: str(cert)),
        (r"/etc/nginx/tls/privkey\.pem", lambda _m: str(key)),
    ]
    for pattern, replacement in steps:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count != 1:
            raise RuntimeError(f"nginx.conf: {pattern!r} matched {count} times, not once")
    return text


def check_files(checks: Checks, compose: dict[str, Any], site: str) -> None:
    """What this run takes from compose.yaml and nginx.conf is what compose runs."""
    print("(1) compose.yaml and nginx.conf, as run here", flush=True)
    services = compose["services"]
    app_env = services["app"]["environment"]
    checks.expect(
        "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["proxy"]["volumes"],
        "compose mounts deploy/nginx.conf, the file rendered here, into the proxy",
    )
    listen = re.search(r"listen (\d+) ssl;", site)
    checks.expect(
        listen is not None and services["proxy"]["ports"] == [f"443:{listen[1]}"],
        "the proxy publishes 443 to nginx.conf's listen port, and nothing else",
    )
    upstream = re.search(r"server app:(\d+) ", site)
    checks.expect(
        upstream is not None and app_env["GUNICORN_BIND"].endswith(f":{upstream[1]}"),
        "nginx.conf's upstream port is the instances' GUNICORN_BIND port",
    )
    published = sorted(name for name, s in services.items() if name != "proxy" and "ports" in s)
    internal = compose["networks"]["backend"].get("internal") is True
    checks.expect(
        not published and internal and services["app"]["networks"] == ["backend"],
        "instances publish no port and sit on the internal backend network only",
    )
    checks.expect(
        app_env["MOODTRACK_TRUSTED_PROXIES"] == "1"
        and app_env["MOODTRACK_RATELIMIT_STORAGE_URL"].startswith("redis://"),
        "the app trusts one proxy hop and counts limits in Redis",
    )
    checks.expect(
        services["worker"]["command"] == ["moodtrack", "worker"],
        "the worker service runs `moodtrack worker`, as here",
    )


def first_amount(env: dict[str, str], variable: str) -> int:
    """The first count of a rate limit in force ("10/minute;50/hour" -> 10)."""
    default = next(d for _, name, d in RATE_LIMIT_VARIABLES if name == variable)
    return parse_many(env.get(variable) or default)[0].amount


def topology_env(
    compose: dict[str, Any],
    *,
    db_url: str,
    workdir: Path,
    tag: str,
    redis_db: int,
    ca: Path,
    smtp_url: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """Every moodtrack process's environment, and the overrides of compose's it includes."""
    overrides = {
        "MOODTRACK_RATELIMIT_STORAGE_URL": f"redis://{HOST}:6379/{redis_db}",
        "MOODTRACK_RATELIMIT_KEY_PREFIX": f"topology-{tag}",
        "MOODTRACK_RATELIMIT_WRITES_PER_USER": "1000000/minute",  # check (6) is a load test
        # The set-up signs up 23 accounts from one address (sign-up and its confirmation).
        "MOODTRACK_RATELIMIT_REGISTER_PER_ADDRESS": "1000/hour",
        "MOODTRACK_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",  # the receiver is on 127.0.0.1
        "SSL_CERT_FILE": str(ca),  # the worker trusts this run's certificate
    }
    # What an operator's moodtrack.env holds.
    env_file = {
        "DATABASE_URL": f"{db_url}?options=-c%20role%3Dmoodtrack_app",
        "MOODTRACK_SIGNING_KEYS": "topo=base64:"
        + base64.b64encode(secrets.token_bytes(48)).decode(),
        "MOODTRACK_TOTP_KEYS": "totp=base64:" + base64.b64encode(secrets.token_bytes(48)).decode(),
        "MOODTRACK_SMTP_URL": smtp_url,
        "MOODTRACK_INSTANCE_PATH": str(workdir),
        "MOODTRACK_PUBLIC_URL": f"https://{HOST}",
    }
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOODTRACK_", "GUNICORN_", "TEST_DATABASE_URL", "SSL_CERT_"))
    }
    compose_env = {k: str(v) for k, v in compose["services"]["app"]["environment"].items()}
    return {**inherited, **compose_env, **env_file, **overrides}, overrides


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the proxy's and the receiver's)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1"),
            *("-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# --------------------------------------------------------------------------- processes


@dataclass
class Proxy:
    """Debian's nginx as a foreground process on a rendered copy of deploy/nginx.conf."""

    workdir: Path
    port: int
    tls: ssl.SSLContext
    process: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        return self.workdir / "nginx-access.log"

    def start(self, site: str) -> None:
        (self.workdir / "site.conf").write_text(site)
        main = self.workdir / "nginx.conf"
        main.write_text(MAIN_CONF.format(workdir=self.workdir))
        errors = self.workdir / "nginx-error.log"
        command = ["nginx", "-p", str(self.workdir), "-c", str(main), "-e", str(errors)]
        tested = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=30)
        if tested.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration: {tested.stderr.strip()}")
        with self.access_log.open("ab") as out, errors.open("ab") as err:
            # access_log /dev/stdout (as in the image) lands in nginx-access.log.
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"], stdout=out, stderr=err, start_new_session=True
            )
        wait_for(self.healthy, 15, "nginx")

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.process.returncode}")
        return probe(self.port, "/healthz", tls=self.tls) is not None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def upstreams(self, request_ids: set[str]) -> dict[str, str]:
        """request id -> the instance(s) that answered it, from the access log."""
        found: dict[str, str] = {}
        for line in self.access_log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry["request_id"] in request_ids:
                    found[entry["request_id"]] = entry["upstream"]
        return found

    def served_by(self, request_ids: set[str], timeout: float = 5.0) -> dict[str, str]:
        """``upstreams``, waiting for nginx to write each line (it does after responding)."""
        deadline = time.monotonic() + timeout
        found = self.upstreams(request_ids)
        while len(found) < len(request_ids) and time.monotonic() < deadline:
            time.sleep(0.05)
            found = self.upstreams(request_ids)
        return found

    def rerouted(self) -> int:
        """Requests nginx sent to a second instance after the first failed."""
        lines = self.access_log.read_text(errors="replace").splitlines()
        return sum(1 for ln in lines if ln.startswith("{") and "," in json.loads(ln)["upstream"])


@dataclass
class Topology:
    env: dict[str, str]
    db_url: str
    instances: list[Server]
    proxy: Proxy
    tls: ssl.SSLContext
    receiver: Receiver
    mail: MailSink  # the SMTP server sign-up codes go to
    worker: subprocess.Popen[bytes]
    workdir: Path
    redis_db: int
    prefix: str  # of this run's Redis keys
    stop_at: float

    def client(self, source: str) -> Client:
        """A client of the proxy, connecting from ``source``."""
        return Client(self.proxy.port, tls=self.tls, source=source)

    def on_time(self) -> None:
        if time.monotonic() > self.stop_at:
            raise RuntimeError(f"past the {DEADLINE:.0f} s deadline")


def start_topology(
    stack: contextlib.ExitStack, args: argparse.Namespace, workdir: Path, tag: str, stop_at: float
) -> Topology:
    """Scratch database, migrations, two instances, nginx, a receiver and a worker."""
    db_name = f"moodtrack_topology_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    stack.callback(drop_database, db_name)
    db_url = f"postgresql://postgres@{HOST}:5432/{db_name}"
    cert, key = make_certificate(workdir)
    mail = MailSink().start()
    stack.callback(mail.stop)
    env, overrides = topology_env(
        read_compose(),
        db_url=db_url,
        workdir=workdir,
        tag=tag,
        redis_db=args.redis_db,
        ca=cert,
        smtp_url=mail.url,
    )
    stack.callback(drop_redis_keys, args.redis_db, f"topology-{tag}")
    print("environment: compose's app environment, secrets made here, and for this run:")
    for name, value in overrides.items():
        print(f"  {name}={value}")
    migrate(env, db_url)
    workers, threads = int(env["GUNICORN_WORKERS"]), int(env["GUNICORN_THREADS"])
    instances = [
        Server(free_port(), env, workdir / f"gunicorn-{name}.log", workers, threads)
        for name in ("a", "b")
    ]
    for instance in instances:
        stack.callback(instance.stop)
        instance.start()
    proxy = Proxy(workdir, free_port(), ssl.create_default_context(cafile=str(cert)))
    stack.callback(proxy.stop)
    proxy.start(
        render_site(
            (DEPLOY / "nginx.conf").read_text(),
            upstreams=[i.port for i in instances],
            port=proxy.port,
            cert=cert,
            key=key,
        )
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_tls).start()
    stack.callback(receiver.stop)
    worker = start_worker(env, workdir)
    stack.callback(stop_process, worker)
    print(
        f"nginx {HOST}:{proxy.port} (TLS) -> gunicorn {workers} workers x {threads} threads "
        f"on {HOST}:{instances[0].port} and {HOST}:{instances[1].port}; 1 worker; "
        f"database {db_name}; logs in {workdir}",
        flush=True,
    )
    return Topology(
        env=env,
        db_url=db_url,
        instances=instances,
        proxy=proxy,
        tls=proxy.tls,
        receiver=receiver,
        mail=mail,
        worker=worker,
        workdir=workdir,
        redis_db=args.redis_db,
        prefix=f"topology-{tag}",
        stop_at=stop_at,
    )


def migrate(env: dict[str, str], owner_url: str) -> None:
    """Migrations as the owner (compose's `migrate` service); then, as each instance's
    container does first (the image's CMD), the same command as moodtrack_app: with nothing
    left to do, it only reads alembic_version."""
    for run_as in ({**env, "DATABASE_URL": owner_url}, env):
        subprocess.run(
            [str(BIN / "moodtrack"), "db", "upgrade"],
            cwd=ROOT,
            env=run_as,
            check=True,
            capture_output=True,
            timeout=120,
        )


def start_worker(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """`moodtrack worker`, as compose's worker service runs it."""
    with (workdir / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [str(BIN / "moodtrack"), "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def drop_database(name: str) -> None:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        print(f"  could not drop {name}: {exc}", flush=True)


def redis_client(db: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=6379, db=db, socket_timeout=5)


def drop_redis_keys(db: int, prefix: str) -> None:
    store = redis_client(db)
    for key in store.scan_iter(match=f"*{prefix}*"):
        store.delete(key)


# --------------------------------------------------------------------------- probes


def probe(
    port: int,
    path: str,
    *,
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
    source: str | None = None,
) -> float | None:
    """Seconds to a 200 on a new connection; None when none came within PROBE_TIMEOUT."""
    client = Client(port, tls=tls, source=source)
    client.conn = client.connect()
    client.conn.timeout = PROBE_TIMEOUT
    started = time.monotonic()
    try:
        status, _, _ = client.request("GET", path, token=token)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        if client.conn is not None:
            client.conn.close()
    return time.monotonic() - started if status == 200 else None


def probe_all(
    port: int, jobs: list[tuple[str, str | None]], tls: ssl.SSLContext | None = None
) -> list[float | None]:
    """The probes of ``jobs`` ((path, token) pairs), all at once."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda job: probe(port, job[0], token=job[1], tls=tls), jobs))


def describe(latencies: list[float | None]) -> str:
    answered = sorted(x for x in latencies if x is not None)
    text = f"{len(answered)}/{len(latencies)} answered within {PROBE_TIMEOUT:.0f} s"
    if answered:
        text += (
            f", median {statistics.median(answered) * 1000:.0f} ms,"
            f" slowest {answered[-1] * 1000:.0f} ms"
        )
    return text


class SlowClients:
    """Connections that never finish a request, one byte per ``interval``: even ones trickle
    the header, odd ones send a whole header announcing a body and trickle the body."""

    HEADER = b"GET /healthz HTTP/1.1\r\nHost: moodtrack\r\nX-Slow: " + b"a" * 4000
    BODY_HEADER = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: moodtrack\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )

    def __init__(
        self, port: int, count: int, *, tls: ssl.SSLContext | None, interval: float = 0.5
    ) -> None:
        self.port, self.count, self.tls, self.interval = port, count, tls, interval
        self.sockets: list[socket.socket] = []
        self.sent: list[int] = []
        self.closed_at: dict[int, float] = {}
        self.opened = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            raw = socket.create_connection(
                (HOST, self.port), timeout=5, source_address=(SLOW_ADDRESS, 0)
            )
            sock = self.tls.wrap_socket(raw, server_hostname=HOST) if self.tls else raw
            self.sockets.append(sock)
            self.sent.append(0)
        self.opened = time.monotonic()
        self._tick()
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _chunk(self, index: int) -> bytes:
        if index % 2 == 0:
            return self.HEADER[self.sent[index] : self.sent[index] + 1]
        return self.BODY_HEADER if self.sent[index] == 0 else b" "

    def _tick(self) -> None:
        for index, sock in enumerate(self.sockets):
            if index in self.closed_at:
                continue
            chunk = self._chunk(index)
            try:
                sock.sendall(chunk)
                self.sent[index] += len(chunk)
            except OSError:  # the other end closed or reset it
                self.closed_at[index] = time.monotonic()

    def _trickle(self) -> None:
        while not self.done.wait(self.interval):
            self._tick()

    def header_tricklers_closed(self) -> int:
        return sum(1 for index in self.closed_at if index % 2 == 0)


# --------------------------------------------------------------------------- checks


def check_forwarded_for(t: Topology, checks: Checks, email: str) -> None:
    print("(2) X-Forwarded-For: set by the proxy, never taken from a client", flush=True)
    client = t.client(FORWARDED_ADDRESS)
    status, headers, _ = client.request(
        "POST",
        LOGIN,
        {"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": f"{FORGED_THROUGH_PROXY}1", "X-Request-ID": "mine"},
    )
    checks.expect(status == 200, f"a login with a forged X-Forwarded-For answers 200 ({status})")
    checks.expect(
        headers.get("x-request-id", "mine") != "mine",
        "the proxy replaces a client's X-Request-ID with its own (the logs' join key)",
    )
    limit = first_amount(t.env, "MOODTRACK_RATELIMIT_LOGIN_PER_ADDRESS")
    statuses = []
    for i in range(limit):  # with the login above: one more than the per-address limit
        status, _, _ = client.request(
            "POST",
            LOGIN,
            {"email": f"nobody-{i}@example.org", "password": "not the password 2026"},
            headers={"X-Forwarded-For": f"{FORGED_THROUGH_PROXY}{i + 2}"},
        )
        statuses.append(status)
    print(f"  {limit + 1} logins, each claiming another address: {dict(Counter(statuses))}")
    checks.expect(
        statuses[-1] == 429 and 429 not in statuses[:-1],
        f"the login limit per address ({limit}) still counts them all as one client",
    )
    keys = [k.decode() for k in redis_client(t.redis_db).scan_iter(match=f"*{t.prefix}*")]
    login_keys = [k for k in keys if "login-address" in k]
    print(f"  limiter keys for the login address limit: {login_keys}")
    checks.expect(
        any(FORWARDED_ADDRESS in k for k in login_keys)
        and not any(FORGED_THROUGH_PROXY in k for k in keys),
        f"limits are counted under the real address {FORWARDED_ADDRESS}, never a forged one",
    )
    addresses = audit_addresses(t.db_url)
    checks.expect(
        FORWARDED_ADDRESS in addresses
        and not any(a.startswith(FORGED_THROUGH_PROXY) for a in addresses),
        f"audit rows record {FORWARDED_ADDRESS} (the proxy connects from {HOST}: the app took "
        "the proxy's X-Forwarded-For), never the forged addresses",
    )
    show_direct_forgery(t, email)


def show_direct_forgery(t: Topology, email: str) -> None:
    """What an instance does with a forged header from a client that bypasses the proxy."""
    direct = Client(t.instances[0].port, source=DIRECT_ADDRESS)
    direct.request(
        "POST",
        LOGIN,
        {"email": email, "password": PASSWORD},
        headers={"X-Forwarded-For": FORGED_DIRECT},
    )
    believed = FORGED_DIRECT in audit_addresses(t.db_url)
    print(
        f"  straight to an instance, bypassing the proxy, a forged X-Forwarded-For "
        f"{'IS' if believed else 'is not'} believed: MOODTRACK_TRUSTED_PROXIES=1 trusts "
        "whoever connects, so only the proxy may reach an instance (compose: the internal "
        "backend network, no published port; here: 127.0.0.1)"
    )


def audit_addresses(db_url: str) -> set[str]:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT DISTINCT client_address FROM audit_events").fetchall()
    return {r[0] for r in rows if r[0]}


def check_shared_limits(t: Topology, checks: Checks, email: str) -> None:
    limit = first_amount(t.env, "MOODTRACK_RATELIMIT_LOGIN_PER_ACCOUNT")
    print(f"(3) the login limit per account ({limit}/minute) across both instances", flush=True)
    client = t.client(LIMITS_ADDRESS)
    answers = []
    # Counted per account and address: the sign-up's login came from another address.
    allowed = limit
    for _ in range(allowed + 2):
        status, headers, _ = client.request("POST", LOGIN, {"email": email, "password": PASSWORD})
        answers.append((status, headers.get("x-request-id", ""), headers.get("retry-after")))
    served = t.proxy.served_by({request_id for _, request_id, _ in answers})
    by_instance = Counter(served.values())
    statuses = [status for status, _, _ in answers]
    print(f"  {len(answers)} more correct logins: {statuses}; served by {dict(by_instance)}")
    checks.expect(
        statuses == [200] * allowed + [429, 429],
        f"{limit} logins from one address succeed, then 429, though both instances answered",
    )
    ports = {f"{HOST}:{i.port}" for i in t.instances}
    checks.expect(set(by_instance) == ports, "both instances served these logins")
    checks.expect(
        all(retry for status, _, retry in answers if status == 429), "each 429 has Retry-After"
    )


def check_delivery(t: Topology, checks: Checks, patient_token: str, tag: str) -> None:
    print("(4) delivery: a positive PHQ-9 item 9 through the proxy, to a webhook", flush=True)
    secret = register_webhook(t, tag)
    checks.expect(secret is not None, "an admin registers an https endpoint through the proxy")
    if secret is None:
        return
    t.receiver.secrets = [secret]
    phq9 = {
        "instrument": "phq9",
        "answers": [1, 1, 1, 1, 1, 1, 1, 1, 2],
        "difficulty": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    client = t.client(SETUP_ADDRESS)
    sent = time.time()
    status, _, body = client.request(
        "POST", "/api/v1/patients/me/assessments", phq9, token=patient_token
    )
    checks.expect(
        status == 201 and "crisis" in json.loads(body), "the PHQ-9 is stored with its crisis block"
    )
    arrived = t.receiver.wait_for(1, timeout=30)
    checks.expect(arrived, "the worker delivered it within 30 s, signature verified")
    if arrived:
        event = t.receiver.received[0]
        print(f"  alert.raised arrived {event.arrived - sent:.2f} s after the POST was sent")
        checks.expect(
            event.body["type"] == "alert.raised" and event.body["data"]["rule"] == "self_harm",
            "it is the self_harm alert.raised event",
        )


def register_webhook(t: Topology, tag: str) -> str | None:
    """An admin made with the CLI (as an operator does) registers the receiver for
    alert.raised through the proxy; its secret, or None when that was refused."""
    email = f"ops-{tag}@example.org"
    subprocess.run(
        [
            str(BIN / "moodtrack"),
            "users",
            "create",
            "--email",
            email,
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=PASSWORD.encode(),
        cwd=ROOT,
        env=t.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    admin = staff_token(t.client(SETUP_ADDRESS), email)
    client = t.client(SETUP_ADDRESS)
    hook = {"url": t.receiver.url, "event_types": ["alert.raised"]}
    status, _, body = client.request("POST", "/api/v1/webhooks", hook, token=admin)
    print(f"  POST /api/v1/webhooks {t.receiver.url}: {status}")
    return json.loads(body)["secret"] if status == 201 else None


def staff_token(client: Client, email: str) -> str:
    """A staff account's access token in production, where staff sign in with two factors:
    enrol (TOTP), confirm with a code, then log in again and pass the second step with one
    of the recovery codes (the TOTP code just used may not be used twice)."""
    _, _, body = client.request("POST", LOGIN, {"email": email, "password": PASSWORD})
    enrolling = json.loads(body)["access_token"]
    _, _, body = client.request(
        "POST", "/api/v1/auth/2fa/enrol", {"password": PASSWORD}, token=enrolling
    )
    code = pyotp.TOTP(json.loads(body)["secret"]).now()
    _, _, body = client.request("POST", "/api/v1/auth/2fa/confirm", {"code": code}, token=enrolling)
    recovery = json.loads(body)["recovery_codes"][0]
    _, _, body = client.request("POST", LOGIN, {"email": email, "password": PASSWORD})
    step = json.loads(body)["mfa_token"]
    _, _, body = client.request(
        "POST", "/api/v1/auth/2fa/verify", {"mfa_token": step, "code": recovery}
    )
    return json.loads(body)["access_token"]


def check_slow_clients(t: Topology, checks: Checks, token: str) -> None:
    print("(5) slow clients: no auth, one byte every 0.5 s, half headers, half bodies", flush=True)
    instance = t.instances[0]
    # Each probe on a new connection, all at once: an instance's worker processes accept in
    # turn, so a probe stalls when it lands on a worker whose threads the slow clients hold.
    jobs: list[tuple[str, str | None]] = [("/healthz", None)] * 6 + [(ME, token)] * 6
    print(f"  {len(jobs)} probes at once (/healthz and GET /me), each on a new connection")
    for count in (0, 4, 8, 12, 16, SLOW_CLIENTS):
        with SlowClients(instance.port, count, tls=None):
            time.sleep(1.0)  # every one of them is trickling
            direct = probe_all(instance.port, jobs)
        print(f"  straight to one instance, {count:2} slow clients: {describe(direct)}")
        wait_for(instance.healthy, 30, "the instance after its slow clients left")
    baseline = probe_all(t.proxy.port, jobs, t.tls)
    print(f"  through the proxy,          0 slow clients: {describe(baseline)}")
    with SlowClients(t.proxy.port, SLOW_CLIENTS, tls=t.tls) as slow:
        time.sleep(1.0)
        proxied = probe_all(t.proxy.port, jobs, t.tls)
        print(f"  through the proxy,         {SLOW_CLIENTS} slow clients: {describe(proxied)}")
        with contextlib.suppress(RuntimeError):
            wait_for(lambda: slow.header_tricklers_closed() == SLOW_CLIENTS // 2, 20, "")
        shed = [at - slow.opened for i, at in slow.closed_at.items() if i % 2 == 0]
        bodies = SLOW_CLIENTS - SLOW_CLIENTS // 2 - (len(slow.closed_at) - len(shed))
    checks.expect(
        None not in proxied,
        f"through the proxy, with {SLOW_CLIENTS} slow clients connected, every /healthz and "
        "GET /me answers 200 within the probe timeout",
    )
    checks.expect(
        len(shed) == SLOW_CLIENTS // 2,
        f"nginx dropped all {SLOW_CLIENTS // 2} header tricklers (after "
        f"{min(shed, default=0):.1f}-{max(shed, default=0):.1f} s: client_header_timeout)",
    )
    print(f"  body tricklers still held by nginx (never by an instance): {bodies}")


def check_proxy_refusals(t: Topology, checks: Checks, token: str) -> None:
    print("(6) the proxy's own refusals: problem+json, at the app's limits", flush=True)
    client = t.client(SETUP_ADDRESS)
    path = "/api/v1/patients/me/mood-entries"
    answers = {}
    # A JSON string of n characters is n + 2 bytes: one byte over the app's limit, then at it.
    for name, size in (("over", MAX_BODY_BYTES + 1), ("at", MAX_BODY_BYTES)):
        answers[name] = client.request("POST", path, "x" * (size - 2), token=token)
    answers["uri"] = client.request("GET", "/healthz?pad=" + "a" * 5000)
    ids = {name: headers.get("x-request-id", "") for name, (_, headers, _) in answers.items()}
    served = t.proxy.served_by(set(ids.values()))
    for name, (status, headers, _) in answers.items():
        upstream = served.get(ids[name]) or "the proxy"
        print(f"  {name:4}: {status} {headers.get('content-type')} from {upstream}")
    over_status, over_headers, _ = answers["over"]
    checks.expect(
        over_status == 413
        and over_headers.get("content-type") == "application/problem+json"
        and not served.get(ids["over"]),
        "a body 1 byte over 1 MiB ends at the proxy: 413 problem+json",
    )
    checks.expect(
        answers["at"][0] != 413 and bool(served.get(ids["at"])),
        "a body of exactly 1 MiB reaches an instance (the proxy's limit is the app's)",
    )
    uri_status, uri_headers, _ = answers["uri"]
    checks.expect(
        uri_status == 414 and uri_headers.get("content-type") == "application/problem+json",
        "a 5,000-byte request line gets the proxy's 414 problem+json, not gunicorn's HTML",
    )


def check_sigkill(t: Topology, checks: Checks, tokens: list[str], pids: list[str]) -> None:
    victim = t.instances[0]
    print(
        f"(7) SIGKILL one instance under load: {LOAD_CLIENTS} clients, {LOAD_ENTRIES} "
        "mood entries with client-chosen ids, retried on 5xx and connection errors",
        flush=True,
    )
    entries = make_entries(LOAD_ENTRIES, datetime.now(UTC) - timedelta(days=300))
    run = Run(
        t.proxy.port,
        tokens,
        min(t.stop_at, time.monotonic() + 120),
        client_options={"tls": t.tls, "source": LOAD_ADDRESS},
    )
    info: dict[str, float] = {}
    reads: list[int | str] = []  # a status, or the error that ended a read without one
    load_done = threading.Event()

    def saboteur() -> None:
        limit = time.monotonic() + 60
        while len(run.acked) < LOAD_ENTRIES // 4 and time.monotonic() < limit:
            time.sleep(0.01)
        info["killed_at"] = time.monotonic()
        victim.kill()
        while len(run.acked) < LOAD_ENTRIES // 2 and time.monotonic() < limit:
            time.sleep(0.01)
        info["restart_at"] = time.monotonic()
        victim.start()
        info["back_at"] = time.monotonic()

    def reader() -> None:  # reads are never retried by the client: the proxy does it
        client = t.client(LOAD_ADDRESS)
        while not load_done.is_set():
            try:
                reads.append(client.request("GET", ME, token=tokens[0])[0])
            except (OSError, http.client.HTTPException) as exc:
                reads.append(type(exc).__name__)

    helpers = [threading.Thread(target=f, daemon=True) for f in (saboteur, reader)]
    for helper in helpers:
        helper.start()
    began = time.monotonic()
    drive(run, "kill", entries, LOAD_CLIENTS)
    took = time.monotonic() - began
    load_done.set()
    for helper in helpers:
        helper.join(timeout=60)
    report_sigkill(t, checks, run, info, reads, took, pids)


def report_sigkill(
    t: Topology,
    checks: Checks,
    run: Run,
    info: dict[str, float],
    reads: list[int | str],
    took: float,
    pids: list[str],
) -> None:
    results = run.results
    print(f"  {len(results)} writes in {took:.1f} s: {summarise(results)}")
    print(f"  {len(reads)} reads (GET /me, not retried by the client): {dict(Counter(reads))}")
    print(f"  requests nginx re-sent to the other instance itself: {t.proxy.rerouted()}")
    replays = sum(1 for r in results if r.status == 200)
    print(f"  retries that found their write already stored (200, not stored twice): {replays}")
    checks.expect("back_at" in info, "instance a was SIGKILLed (master and workers) and restarted")
    failed = [r for r in results if r.status is None or r.status >= 500]
    dropped = [r for r in failed if r.status is None]
    # A POST in flight on the killed instance is not re-sent by nginx (a refresh token
    # rotates); the client gets the proxy's 502/504, or its answer is cut (below), or, on a
    # loaded machine, its own timeout: either way its retry with the same id absorbs it.
    print(f"  of the failed writes, {len(dropped)} ended without an answer (cut or timed out)")
    checks.expect(
        all(
            r.status is None or (r.status in (502, 503, 504) and "problem+json" in r.content_type)
            for r in failed
        ),
        "every answer clients saw from the failure was the proxy's problem+json 502/503/504",
    )
    checks.expect(
        len(failed) <= LOAD_CLIENTS,
        f"{len(failed)} failed writes, at most one per client ({LOAD_CLIENTS}): only requests "
        "in flight on the killed instance; each was absorbed by the client's retry",
    )
    stored = set(stored_ids(t.db_url, pids))
    acked = run.acked
    lost = acked - stored
    checks.expect(
        not lost, f"every acknowledged write is stored ({len(acked)} acked, {len(lost)} lost)"
    )
    checks.expect(
        len(stored) == LOAD_ENTRIES, f"after retries: exactly {LOAD_ENTRIES} rows ({len(stored)})"
    )
    # gunicorn sends a response's head and its body in two writes. An instance killed
    # between them has given nginx a status line it has already passed on, so nginx can
    # only cut the answer (the client sees IncompleteRead), never re-send it elsewhere. The
    # one reader has one request in flight at the kill: at most one read can be cut.
    answered = [r for r in reads if isinstance(r, int)]
    cut = [r for r in reads if not isinstance(r, int)]
    checks.expect(
        bool(answered) and all(status == 200 for status in answered),
        "every read that got an answer got 200: nginx re-sends a GET that was in flight on "
        "the killed instance before it answered",
    )
    checks.expect(
        len(cut) <= 1 and all(r == "IncompleteRead" for r in cut),
        f"reads cut mid-answer: {len(cut)} (at most the one in flight, as IncompleteRead)",
    )
    if "back_at" in info:
        print(
            f"  instance a killed, restarted {info['restart_at'] - info['killed_at']:.1f} s "
            f"later, answering /healthz {info['back_at'] - info['restart_at']:.1f} s after that"
        )
        rejoined = rejoin_seconds(t, info["back_at"])
        checks.expect(rejoined is not None, "the restarted instance gets traffic again")
        if rejoined is not None:
            print(f"  nginx sent it traffic again {rejoined:.1f} s after it was back")


def rejoin_seconds(t: Topology, back_at: float) -> float | None:
    """Seconds after ``back_at`` until nginx routes a request to instance a again."""
    address = f"{HOST}:{t.instances[0].port}"
    client = t.client(SETUP_ADDRESS)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, headers, _ = client.request("GET", "/healthz")
        request_id = headers.get("x-request-id", "")
        if t.proxy.served_by({request_id}).get(request_id) == address:
            return time.monotonic() - back_at
    return None


# --------------------------------------------------------------------------- main


def report_logs(workdir: Path) -> None:
    for log in sorted(workdir.glob("*.log")):
        if log.name == "nginx-access.log":
            continue
        lines = log.read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if '"level":"error"' in ln or "Traceback" in ln]
        if log.name == "nginx-error.log":
            errors = [ln for ln in lines if "[emerg]" in ln or "[crit]" in ln]
        print(f"{log.name}: {len(lines)} lines, {len(errors)} errors")
        for line in errors[:5]:
            print(f"  {line[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args()
    # A SIGTERM (CI's `timeout`) unwinds like an error: every process started here is in
    # its own session and would outlive this one otherwise.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    began = time.monotonic()
    checks = Checks()
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="moodtrack-topology-"))
    workdir.chmod(0o755)  # nginx's worker processes (user nobody) use temp paths inside
    try:
        if not pg_ready() or shutil.which("nginx") is None:
            raise RuntimeError(
                "needs PostgreSQL on 127.0.0.1:5432 and nginx (apt-get install nginx)"
            )
        with contextlib.ExitStack() as stack:
            t = start_topology(stack, args, workdir, tag, began + DEADLINE)
            run_checks(t, checks, tag)
            checks.expect(t.worker.poll() is None, "the worker is still running")
    except Exception as exc:  # a harness or service error: a failure either way
        checks.expect(False, f"run aborted: {type(exc).__name__}: {exc}")
    report_logs(workdir)
    if args.keep or checks.failures:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"took {time.monotonic() - began:.0f} s")
    if checks.failures:
        print(f"FAILED: {len(checks.failures)} expectation(s)")
        for failure in checks.failures:
            print(f"  - {failure}")
        return 1
    print("all expectations held")
    return 0


def run_checks(t: Topology, checks: Checks, tag: str) -> None:
    check_files(checks, read_compose(), (DEPLOY / "nginx.conf").read_text())
    setup = t.client(SETUP_ADDRESS)
    load = [register(setup, t.mail, i, tag) for i in range(PATIENTS)]
    register(setup, t.mail, 100, tag)  # for the shared limit
    register(setup, t.mail, 101, tag)  # for X-Forwarded-For
    alerting = register(setup, t.mail, 102, tag)
    for check in (
        lambda: check_forwarded_for(t, checks, account_email(101, tag)),
        lambda: check_shared_limits(t, checks, account_email(100, tag)),
        lambda: check_delivery(t, checks, alerting[0], tag),
        lambda: check_slow_clients(t, checks, load[0][0]),
        lambda: check_proxy_refusals(t, checks, load[0][0]),
        lambda: check_sigkill(t, checks, [a[0] for a in load], [a[1] for a in load]),
    ):
        t.on_time()
        check()


if __name__ == "__main__":
    sys.exit(main())
