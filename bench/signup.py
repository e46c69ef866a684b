"""Sign-up and failed-login timing for new/unknown and existing emails, in process.

    python -m bench.signup [--database-url URL] [--rounds 200]

Production argon2 cost (RFC 9106's second option). Interleaved rounds: each round signs up one
new email and the existing one, and fails one login for an unknown email and one for the
existing account (each from its own address, so the throttle does not answer instead). The
point is that the two columns of each pair do not differ beyond noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from api import create_app
from api.config import Settings
from api.mail import MemoryMailer
from bench.common import describe, fresh_database


def _timed(fn: Any, *args: str) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Run the rounds and print median and p95 of each kind of request."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    url = fresh_database(args.database_url)
    app = create_app(
        Settings(
            database_url=url,
            signing_keys={"bench": b"b" * 48},
            active_kid="bench",
            instance_path=Path(tempfile.mkdtemp()),
            log_level="WARNING",
        )
    )
    mailer = MemoryMailer()
    app.extensions["moodtrack"].mailer = mailer
    client = app.test_client()
    password = "a long bench passphrase 2026"
    existing = "owner@bench.example"

    def sign_up(email: str) -> None:
        body = {"email": email, "password": password, "display_name": "B", "timezone": "UTC"}
        assert client.post("/api/v1/auth/register", json=body).status_code == 202

    sign_up(existing)
    code = mailer.code_for(existing)
    confirm = {"email": existing, "code": code, "password": password}
    assert client.post("/api/v1/auth/register/confirm", json=confirm).status_code == 201

    def fail_login(email: str, address: str) -> None:
        response = client.post(
            "/api/v1/auth/login",
            json={"email": email, "password": "a wrong bench passphrase"},
            environ_base={"REMOTE_ADDR": address},
        )
        assert response.status_code == 401

    samples: dict[str, list[float]] = {k: [] for k in ("new", "existing", "unknown", "owner")}
    for i in range(args.rounds):
        address = f"10.{i // 250}.{i % 250}.1"
        samples["new"].append(_timed(sign_up, f"new{i}@bench.example"))
        samples["existing"].append(_timed(sign_up, existing))
        samples["unknown"].append(_timed(fail_login, f"nobody{i}@bench.example", address))
        samples["owner"].append(_timed(fail_login, existing, address))
    print(f"database: {url.split(':', 1)[0]}; {args.rounds} interleaved rounds")
    labels = {
        "new": "sign-up, new email",
        "existing": "sign-up, existing email",
        "unknown": "login, unknown email",
        "owner": "login, existing email, wrong password",
    }
    for key, label in labels.items():
        mean = statistics.fmean(samples[key])
        print(f"  {label:40} {describe(samples[key])}   mean {mean:7.2f} ms")
    app.extensions["moodtrack"].engine.dispose()


if __name__ == "__main__":
    main()
