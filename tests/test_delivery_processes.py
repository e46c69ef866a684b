"""Delivery with real worker processes (services tier: .ci/run runs it on PostgreSQL).

- 3 workers and 1,000 events on PostgreSQL: every event reaches a healthy receiver once.
- A worker SIGKILLed while a receiver holds its request loses nothing: another worker sends
  the delivery once the lease runs out.
- `moodtrack serve` (the quick start) delivers without a second command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from api.mail import SIGNUP_CODE
from tests.conftest import PASSWORD
from tests.delivery_harness import (
    REPO,
    add_webhook,
    delivered_count,
    emit_events,
    scratch_database,
    start_worker,
    stop,
    worker_env,
)
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.services


def _postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.fail("this test needs PostgreSQL: set TEST_DATABASE_URL (as .ci/run does)")
    return url


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_three_workers_deliver_a_thousand_events_once_each_on_postgresql(tmp_path: Path):
    receiver = Receiver().start()
    with scratch_database(_postgres_url()) as url:
        receiver.secrets = [add_webhook(url, receiver.url)]
        events = emit_events(url, 1000, per_commit=50)
        workers = [start_worker(url, tmp_path / f"worker{i}.log") for i in range(3)]
        try:
            # Recorded as delivered, all of them: nothing is left for a worker to send again.
            _wait(lambda: delivered_count(url) >= 1000, 120, "1,000 deliveries")
        finally:
            for worker in workers:
                stop(worker)
        logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
    receiver.stop()
    ids = receiver.ids()
    assert receiver.rejected == 0, logs
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert set(ids) == {str(event_id) for event_id, _ in events}
    assert receiver.requests == 1000  # not one repeat reached the healthy receiver


def test_a_worker_killed_mid_delivery_loses_no_event(tmp_path: Path):
    receiver = Receiver(mode="hold").start()
    base = os.environ.get("TEST_DATABASE_URL")
    quick = {"MOODTRACK_WEBHOOK_TIMEOUT_SECONDS": "10", "MOODTRACK_DELIVERY_LEASE_SECONDS": "21"}
    with scratch_database(base) as url:
        receiver.secrets = [add_webhook(url, receiver.url)]
        ((event_id, _),) = emit_events(url, 1)
        first = start_worker(url, tmp_path / "first.log", **quick)
        try:
            assert receiver.arrived.wait(timeout=60), (tmp_path / "first.log").read_text()
            stop(first, kill=True)  # mid-delivery: the receiver has not answered
            assert receiver.received == []
        finally:
            stop(first, kill=True)
        receiver.mode = "ok"
        receiver.release.set()
        second = start_worker(url, tmp_path / "second.log", **quick)
        try:
            # After the killed worker's lease (21 s) runs out, the second sends it again.
            assert receiver.wait_for(1, timeout=90), (tmp_path / "second.log").read_text()
            _wait(lambda: delivered_count(url) == 1, 30, "the delivery to be recorded")
        finally:
            stop(second)
    receiver.stop()
    # At least once: the held request of the killed worker may complete on the receiver's
    # side too; both carry the same webhook-id, so the receiver keeps one.
    assert set(receiver.ids()) == {str(event_id)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def test_moodtrack_serve_delivers_without_a_second_command(tmp_path: Path):
    receiver = Receiver().start()
    env = worker_env(
        f"sqlite:///{tmp_path / 'serve.db'}",
        MOODTRACK_ARGON2_TIME_COST="1",
        MOODTRACK_ARGON2_MEMORY_KIB="1024",
        MOODTRACK_ARGON2_PARALLELISM="1",
    )
    moodtrack = [sys.executable, "-m", "api.cli"]
    create_admin = ["users", "create", "--password-stdin", "--email", "ops@example.org"]
    subprocess.run(
        [*moodtrack, *create_admin, "--role", "admin"],
        input=f"{PASSWORD}\n".encode(),
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [*moodtrack, "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return _call(base, "/healthz")["status"] == "ok"
            except (OSError, urllib.error.URLError):
                return False

        _wait(up, 60, "moodtrack serve")
        children = subprocess.run(
            ["pgrep", "-f", "-P", str(server.pid), "api.cli worker"], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 1, children
        ops = _call(base, "/api/v1/auth/login", {"email": "ops@example.org", "password": PASSWORD})
        hook = _call(
            base,
            "/api/v1/webhooks",
            {"url": receiver.url, "event_types": ["alert.raised"]},
            ops["access_token"],
        )
        receiver.secrets = [hook["secret"]]
        account = {
            "email": "pat@example.org",
            "password": PASSWORD,
            "display_name": "Pat",
            "timezone": "UTC",
        }
        _call(base, "/api/v1/auth/register", account)
        # Without a relay, development writes the sign-up email under instance/outbox/.
        outbox = Path(env["MOODTRACK_INSTANCE_PATH"]) / "outbox"
        _wait(lambda: any(outbox.glob("*.eml")), 30, "the sign-up email")
        code = SIGNUP_CODE.search(next(outbox.glob("*.eml")).read_text()).group(1)
        confirm = {"email": account["email"], "code": code, "password": PASSWORD}
        _call(base, "/api/v1/auth/register/confirm", confirm)
        pat = _call(base, "/api/v1/auth/login", {"email": account["email"], "password": PASSWORD})
        form = {"instrument": "phq9", "answers": [1, 1, 1, 1, 1, 1, 1, 1, 2]}
        form["occurred_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        answered = _call(base, "/api/v1/patients/me/assessments", form, pat["access_token"])
        assert answered["crisis"] is not None
        assert receiver.wait_for(1, timeout=30), log.read_text()
        assert receiver.received[0].body["data"]["rule"] == "self_harm"
        assert receiver.received[0].body["data"]["priority"] == "high"
        # SIGTERM to the server alone, as a service manager sends it: its worker ends too.
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        _wait(lambda: not _alive(int(children[0])), 30, "the worker to end with the server")
    finally:
        stop(server)
        receiver.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has exited and init reaps it).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()
