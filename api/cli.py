"""The ``moodtrack`` command: serve, worker, db upgrade, db purge, users create."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

from api import create_app
from api.config import ConfigError, Settings, load_settings
from api.db import make_engine, make_session_factory
from api.delivery.worker import run_worker
from api.openapi import default_path, render
from api.supervise import supervise
from models.accounts import Role, create_user, purge_expired_tokens
from models.base import utcnow
from models.errors import DomainError
from models.organisations import MemberRole, add_member, organisation_for_cli
from models.passwords import Passwords
from models.throttle import purge_stale


def alembic_config(database_url: str) -> Config:
    """Alembic configured in code, so an installed package migrates without alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(settings: Settings) -> None:
    """Apply every migration to the configured database."""
    command.upgrade(alembic_config(settings.database_url), "head")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    upgrade_database(settings)
    print(f"moodtrack serving on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    server = [
        *(sys.executable, "-m", "gunicorn", "api:create_app()"),
        *("--bind", f"{args.host}:{args.port}"),
        *("--workers", str(args.workers), "--threads", str(args.threads)),
    ]
    # The one-command default delivers too: a worker process beside the server.
    worker = None if args.no_worker else [sys.executable, "-m", "api.cli", "worker"]
    if worker is not None:
        worker.append("--exit-with-parent")
    return supervise(server=server, worker=worker)


def _openapi(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.output) if args.output else default_path()
    text = render(create_app(settings))
    if args.check:
        current = path.read_text("utf-8") if path.exists() else ""
        print(f"{path} is {'up to date' if current == text else 'out of date'}")
        return 0 if current == text else 1
    path.write_text(text, "utf-8")
    print(f"wrote {path}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    # No migration here: the API's start (`moodtrack db upgrade`, or serve) migrates; two
    # processes migrating one database at once would race.
    return run_worker(settings, exit_with_parent=args.exit_with_parent)


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    if not args.password_stdin:
        print(
            "--password-stdin is required: passwords never go on the command line.", file=sys.stderr
        )
        return 2
    password = sys.stdin.readline().rstrip("\r\n")
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            operator = args.role == "admin"
            user = create_user(
                db=db,
                passwords=Passwords(settings.argon2),
                email=args.email,
                password=password,
                role=Role.admin if operator else Role.clinician,
                display_name=args.display_name or args.email.split("@")[0],
                timezone=args.timezone,
            )
            where = ""
            if not operator:
                organisation = organisation_for_cli(db=db, name=args.organisation)
                add_member(
                    db=db, user=user, organisation_id=organisation.id, role=MemberRole(args.role)
                )
                where = f" in organisation {organisation.id} ({organisation.name})"
            db.commit()
            print(f"created {args.role} {user.id}{where}")
    except DomainError as exc:
        messages = getattr(exc, "errors", None) or {"error": [exc.detail]}
        for field, problems in messages.items():
            for problem in problems:
                print(f"{field}: {problem}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _purge(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            now = utcnow()
            tokens = purge_expired_tokens(db=db, now=now)
            counts = purge_stale(db=db, now=now)
            db.commit()
    finally:
        engine.dispose()
    print(f"purged {tokens} expired token rows and {counts} stale login counts")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="moodtrack", description="moodtrack API service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate the database, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4)
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start a delivery worker beside the server (run `moodtrack worker`)",
    )

    contract = sub.add_parser("openapi", help="write openapi.yaml from the code")
    contract.add_argument("--output", help="where to write it (default: the checkout's file)")
    contract.add_argument(
        "--check", action="store_true", help="only say whether the file is up to date (exit 1)"
    )

    worker = sub.add_parser("worker", help="deliver alerts, escalations and reminders")
    worker.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply all migrations")
    db_sub.add_parser(
        "purge", help="delete expired token deny-list rows and stale login failure counts"
    )

    users = sub.add_parser("users", help="accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser(
        "create", help="create an operator (admin), or a clinician or org admin of an organisation"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=["clinician", "org_admin", "admin"])
    create.add_argument(
        "--organisation",
        help="name of the organisation a clinician or org_admin joins (made if there is none "
        "of that name); optional when the database has at most one organisation",
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    create.add_argument("--display-name")
    create.add_argument("--timezone", default="UTC")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "worker":
        return _worker(settings, args)
    if args.command == "openapi":
        return _openapi(settings, args)
    if args.command == "db" and args.db_command == "purge":
        upgrade_database(settings)
        return _purge(settings)
    if args.command == "db":
        upgrade_database(settings)
        if args.db_command == "purge":
            return _purge(settings)
        print("database is up to date")
        return 0
    if args.command == "users":
        upgrade_database(settings)
        return _create_user(settings, args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
