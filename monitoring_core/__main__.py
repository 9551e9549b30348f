"""`python -m monitoring_core …`: the command line (README "Processes")."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from monitoring_core.config import ConfigError, load_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitoring_core")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply schema migrations (idempotent)")
    demo = sub.add_parser("demo-data", help="load the demo data set")
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--if-empty", action="store_true", help="skip when data is already there")
    api = sub.add_parser("api", help="run the HTTP ingest + admin API")
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--host", default="0.0.0.0")
    sub.add_parser("db-url", help="print the SQLAlchemy URL in use")
    user = sub.add_parser("user").add_subparsers(dest="action", required=True)
    add_user = user.add_parser("add")
    add_user.add_argument("name")
    add_user.add_argument("--role", required=True, choices=["admin", "responder", "viewer"])
    add_user.add_argument("--password-stdin", action="store_true")
    key = sub.add_parser("apikey").add_subparsers(dest="action", required=True)
    add_key = key.add_parser("add")
    add_key.add_argument("name")
    add_key.add_argument("--scope", required=True, choices=["ingest", "admin"])
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValueError("passwords do not match")
    return first


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from monitoring_core.db import database_url, make_engine

    if args.command == "db-url":
        print(database_url(settings, keep_running=True))
        return 0
    if args.command == "api":
        from monitoring_core.api.server import serve

        serve(settings, host=args.host, port=args.port or settings.api_port)
        return 0
    engine = make_engine(database_url(settings))
    now = datetime.now(UTC)
    try:
        return _run(args, engine, now)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"database unavailable: {exc.orig or exc}".splitlines()[0], file=sys.stderr)
        return 3
    finally:
        engine.dispose()


def _run(args: argparse.Namespace, engine: Engine, now: datetime) -> int:
    from monitoring_core.migrate import migrate

    if args.command == "migrate":
        migrate(engine, now=now)
        print("database is at the latest schema")
        return 0
    if args.command == "demo-data":
        from monitoring_core.demo import load_demo_data

        migrate(engine, now=now)
        summary = load_demo_data(engine, days=args.days, now=now, only_if_empty=args.if_empty)
        print(summary)
        return 0
    if args.command == "user":
        from monitoring_core.accounts import create_user
        from monitoring_core.enums import Role

        password = _read_password(args.password_stdin)
        from sqlalchemy.exc import IntegrityError

        try:
            with engine.begin() as conn:
                create_user(conn, username=args.name, password=password, role=Role(args.role))
        except IntegrityError:
            raise ValueError(f"a user named {args.name!r} already exists") from None
        print(f"user {args.name} added with role {args.role}")
        return 0
    if args.command == "apikey":
        from monitoring_core.accounts import create_api_key
        from monitoring_core.enums import ApiScope

        with engine.begin() as conn:
            key = create_api_key(conn, name=args.name, scope=ApiScope(args.scope))
        print(f"API key {args.name!r} (scope {args.scope}); it is shown only this once:")
        print(key)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
