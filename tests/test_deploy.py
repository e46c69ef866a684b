"""deploy/: the compose file, nginx.conf and the Dockerfile agree with each other and with
what `python -m bench.topology` runs (that script, in CI, runs the topology itself)."""

from __future__ import annotations

import base64
import json
import secrets
import shlex
from pathlib import Path

from api.config import load_settings
from bench.faults import HOST, Checks, Server
from bench.topology import DEPLOY, ROOT, check_files, read_compose, render_site


def test_compose_and_nginx_conf_agree() -> None:
    checks = Checks()
    check_files(checks, read_compose(), (DEPLOY / "nginx.conf").read_text())
    assert checks.failures == []


def test_nginx_conf_renders_every_template_line() -> None:
    site = render_site(
        (DEPLOY / "nginx.conf").read_text(),
        upstreams=[1111, 2222],
        port=3333,
        cert=Path("/run/cert.pem"),
        key=Path("/run/key.pem"),
    )
    assert f"server {HOST}:1111 max_fails=3 fail_timeout=10s;" in site
    assert f"server {HOST}:2222 max_fails=3 fail_timeout=10s;" in site
    assert f"listen {HOST}:3333 ssl;" in site
    assert "ssl_certificate     /run/cert.pem;" in site
    assert "ssl_certificate_key /run/key.pem;" in site
    assert "app:8000" not in site and "/etc/nginx/tls" not in site


def test_bench_servers_run_gunicorn_as_the_dockerfile_does() -> None:
    cmd = next(ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.startswith("CMD"))
    shell = json.loads(cmd[len("CMD") :])[-1]
    dockerfile = shlex.split(shell.split("exec ", 1)[1])
    values = {"$GUNICORN_BIND": f"{HOST}:8000", "$GUNICORN_WORKERS": "4", "$GUNICORN_THREADS": "4"}
    dockerfile = [values.get(arg, arg) for arg in dockerfile]
    server = Server(8000, {}, Path("unused.log"), workers=4, threads=4)
    assert [Path(server.command()[0]).name, *server.command()[1:]] == dockerfile


def test_compose_environment_is_a_production_configuration() -> None:
    environment = read_compose()["services"]["app"]["environment"]
    settings = load_settings(
        {
            **{name: str(value) for name, value in environment.items()},
            # What the operator's moodtrack.env adds (README, "Production topology").
            "DATABASE_URL": "postgresql://moodtrack_web:pw@db:5432/moodtrack",
            "MOODTRACK_SIGNING_KEYS": "k=base64:"
            + base64.b64encode(secrets.token_bytes(48)).decode(),
            "MOODTRACK_TOTP_KEYS": "t=base64:" + base64.b64encode(secrets.token_bytes(48)).decode(),
            "MOODTRACK_SMTP_URL": "smtp+starttls://moodtrack:secret@mail.example.org:587",
        }
    )
    assert settings.env == "production"
    assert settings.trusted_proxies == 1
    assert settings.rate_limits.storage_url == "redis://redis:6379/0"
