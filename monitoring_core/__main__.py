"""`python -m monitoring_core …`: the command line (README "Processes")."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from monitoring_core.config import ConfigError, load_settings
from monitoring_core.enums import ApiScope

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
    api.add_argument("--host", default=None, help="default MONITORING_BIND_HOST (127.0.0.1)")
    api.add_argument(
        "--workers", type=int, default=None, help="processes (default MONITORING_API_PROCESSES)"
    )
    sub.add_parser("db-url", help="print the SQLAlchemy URL in use")
    compact = sub.add_parser(
        "compact", help="compact raw metric points into series chunks and pack API timings now"
    )
    compact.add_argument("--verify", action="store_true", help="then check a sample of chunks")
    compact.add_argument("--sample", type=int, default=100, help="chunks to verify (100)")
    _user_commands(sub.add_parser("user").add_subparsers(dest="action", required=True))
    _key_commands(sub.add_parser("apikey").add_subparsers(dest="action", required=True))
    _config_commands(sub.add_parser("config").add_subparsers(dest="action", required=True))
    for name, what in (("backup", "dump the database to FILE"), ("restore", "load FILE")):
        command = sub.add_parser(name, help=what + " (pg_dump custom format)")
        command.add_argument("file")
        command.add_argument("--pg-bin", help="directory of pg_dump/pg_restore to use")
    return parser


def _config_commands(config: Any) -> None:
    export = config.add_parser("export", help="write the configuration as YAML (secrets as ${ENV})")
    export.add_argument("file", nargs="?", help="the file to write (default: standard output)")
    apply = config.add_parser("apply", help="apply a configuration file (validated first)")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")


def _user_commands(user: Any) -> None:
    add_user = user.add_parser("add", help="add a UI user")
    add_user.add_argument("name")
    add_user.add_argument("--role", required=True, choices=["admin", "responder", "viewer"])
    add_user.add_argument("--password-stdin", action="store_true")
    user.add_parser("list", help="every user, active or not")
    user.add_parser("deactivate", help="stop a user signing in or acting").add_argument("name")
    reset = user.add_parser("reset-password", help="set a user's new password")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    orgs = user.add_parser(
        "organizations", help="limit a user to organisations (row-level security), or --all"
    )
    orgs.add_argument("name")
    orgs.add_argument("organization", nargs="*")
    orgs.add_argument("--all", action="store_true", help="lift the limit")


def _key_commands(key: Any) -> None:
    add_key = key.add_parser("add", help="create a key (printed once)")
    add_key.add_argument("name")
    add_key.add_argument("--scope", required=True, choices=[s.value for s in ApiScope])
    add_key.add_argument(
        "--rate-limit",
        type=_limit_arg,
        help="requests per minute (0: unlimited; default: the configured one)",
    )
    add_key.add_argument(
        "--point-limit",
        type=_limit_arg,
        help="points (items) per minute (0: unlimited; default: the configured one)",
    )
    add_key.add_argument("--expires-in-days", type=float, help="the key stops working then")
    add_key.add_argument(
        "--allowed-origin", action="append", default=[], help="browser keys: an allowed Origin"
    )
    key.add_parser("list", help="every key (never the key itself)")
    key.add_parser("revoke", help="revoke a key by id").add_argument("id", type=int)
    change = key.add_parser("set", help="change a key's request/point rates or expiry")
    change.add_argument("id", type=int)
    rates = "per minute, 'unlimited' (or 0) or 'default' (the configured one)"
    change.add_argument("--rate-limit", type=_limit_arg, help=f"requests {rates}")
    change.add_argument("--point-limit", type=_limit_arg, help=f"points (items) {rates}")
    change.add_argument("--expires-in-days", type=_days_or_never, help="days, or 'never'")


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

        serve(
            settings,
            host=args.host or settings.bind_host,
            port=args.port or settings.api_port,
            workers=max(1, args.workers or settings.api_processes),
        )
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
    if args.command in ("user", "apikey"):
        from monitoring_core.accounts import AccountNotFound

        if getattr(args, "password_stdin", None) is not None:  # asked before any transaction
            args.password = _read_password(args.password_stdin)
        try:
            with engine.begin() as conn:
                command = _user_command if args.command == "user" else _key_command
                command(args, conn, now)
        except AccountNotFound as exc:
            raise ValueError(f"no {exc}") from None
        return 0
    if args.command == "config":
        return _config_command(args, engine, now)
    if args.command == "compact":
        from monitoring_core.compaction import compact, pack_api_timings, verify_chunks

        print(compact(engine, now).summary())
        print(pack_api_timings(engine, now).summary())
        if not args.verify:
            return 0
        with engine.connect() as conn:
            report = verify_chunks(conn, sample=args.sample)
        print(report.summary())
        for problem in report.problems:
            print(problem, file=sys.stderr)
        return 1 if report.problems else 0
    if args.command in ("backup", "restore"):
        return _backup_command(args, engine)
    raise AssertionError(args.command)


def _config_command(args: argparse.Namespace, engine: Engine, now: datetime) -> int:
    import os
    from pathlib import Path

    from monitoring_core.audit import system_actor
    from monitoring_core.config_io import ConfigInvalid, apply_config, export_config

    if args.action == "export":
        with engine.connect() as conn:
            text, needed = export_config(conn, now=now)
        if args.file:
            Path(args.file).write_text(text)
        else:
            sys.stdout.write(text)
        if needed:
            print("secrets are read on apply from: " + ", ".join(needed), file=sys.stderr)
        return 0
    text = Path(args.file).read_text()
    try:
        with engine.begin() as conn:
            changes = apply_config(
                conn,
                text,
                env=os.environ,
                actor=system_actor(_CLI_ACTOR),
                now=now,
                dry_run=args.dry_run,
            )
    except ConfigInvalid as exc:
        for problem in exc.problems:
            where = problem.where or "file"
            print(f"{args.file}:{problem.line or '?'}: {where}: {problem.message}", file=sys.stderr)
        return 1
    for change in changes:
        print(change)
        if change.secret:  # committed above: the only time this key's secret is seen
            print(f"    new key: {change.secret}  (shown once: store it now)")
        elif change.section == "api_keys" and change.kind == "create" and args.dry_run:
            print("    (its new secret is printed once when the file is applied)")
    done = "would change" if args.dry_run else "changed"
    print(f"{len(changes)} item(s) {done}" if changes else "no changes")
    return 0


def _backup_command(args: argparse.Namespace, engine: Engine) -> int:
    from pathlib import Path

    from monitoring_core.backup import BackupError, backup, restore

    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    try:
        if args.command == "backup":
            done = backup(url, Path(args.file), bin_dir=args.pg_bin)
            print(f"backup written to {done.path}: {done.bytes:,} bytes in {done.seconds:.1f} s")
        else:
            seconds = restore(url, Path(args.file), bin_dir=args.pg_bin)
            print(f"restored {args.file} in {seconds:.1f} s; run `migrate` if the backup is older")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


_CLI_ACTOR = "cli"  # audited as system:cli: whoever runs the CLI has the database itself


def _user_command(args: argparse.Namespace, conn: Connection, now: datetime) -> None:
    from monitoring_core import accounts
    from monitoring_core.audit import system_actor

    actor = system_actor(_CLI_ACTOR)
    if args.action == "list":
        _print_table(
            accounts.list_users(conn), ("id", "username", "role", "is_active", "organization_ids")
        )
    elif args.action == "deactivate":
        accounts.deactivate_user(conn, user=args.name, actor=actor, now=now)
        print(f"user {args.name} deactivated")
    elif args.action == "reset-password":
        accounts.reset_password(conn, user=args.name, password=args.password, actor=actor, now=now)
        print(f"password of {args.name} changed")
    elif args.action == "organizations":
        from monitoring_core import org_scope

        if args.all == bool(args.organization):
            raise accounts.AccountInvalid("name organisations, or --all to lift the limit")
        organizations = None if args.all else args.organization
        org_scope.set_user_organizations(
            conn, user=args.name, organizations=organizations, actor=actor, now=now
        )
        shown = "every organisation" if organizations is None else ", ".join(organizations)
        print(f"user {args.name} sees {shown}")
    else:
        accounts.add_user(
            conn, username=args.name, password=args.password, role=args.role, actor=actor, now=now
        )
        print(f"user {args.name} added with role {args.role}")


def _key_command(args: argparse.Namespace, conn: Connection, now: datetime) -> None:
    from monitoring_core import accounts
    from monitoring_core.audit import system_actor

    actor = system_actor(_CLI_ACTOR)
    if args.action == "list":
        columns: tuple[str, ...] = ("id", "name", "prefix", "scope", "rate_limit_per_minute")
        columns = (*columns, "points_per_minute", "expires_at")
        _print_table(accounts.list_api_keys(conn), (*columns, "revoked_at", "last_used_at"))
    elif args.action == "revoke":
        row = accounts.revoke_api_key(conn, key_id=args.id, actor=actor, now=now)
        print(f"API key {row['id']} ({row['name']}) revoked")
    elif args.action == "set":
        changes: dict[str, Any] = {}
        if args.rate_limit is not None:
            changes["rate_limit_per_minute"] = _limit_value(args.rate_limit)
        if args.point_limit is not None:
            changes["points_per_minute"] = _limit_value(args.point_limit)
        if args.expires_in_days is not None:
            changes["expires_at"] = _days_from(now, args.expires_in_days or None)
        row = accounts.update_api_key(conn, key_id=args.id, actor=actor, now=now, **changes)
        requests, points = (
            _limit_text(row[c]) for c in ("rate_limit_per_minute", "points_per_minute")
        )
        expires = row["expires_at"] or "never"
        print(
            f"API key {row['id']}: {requests} requests and {points} points per minute,"
            f" expires {expires}"
        )
    else:
        _, key = accounts.add_api_key(
            conn,
            name=args.name,
            scope=args.scope,
            actor=actor,
            now=now,
            rate_limit_per_minute=_limit_value(args.rate_limit),
            points_per_minute=_limit_value(args.point_limit),
            expires_at=_days_from(now, args.expires_in_days),
            allowed_origins=args.allowed_origin,
        )
        print(f"API key {args.name!r} (scope {args.scope}); it is shown only this once:")
        print(key)


def _days_from(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now + timedelta(days=days)


_DEFAULT_LIMIT = -1  # what `_limit_arg` gives for 'default'


def _limit_arg(value: str) -> int:
    """A per-minute limit: a number, 0 or 'unlimited'/'none', or 'default' (_DEFAULT_LIMIT)."""
    word = value.strip().lower()
    if word in ("unlimited", "none"):
        return 0
    return _DEFAULT_LIMIT if word == "default" else int(value)


def _limit_value(arg: int | None) -> int | None:
    """The column value for a parsed limit: None (the configured default) for 'default'."""
    return None if arg is None or arg == _DEFAULT_LIMIT else arg


def _limit_text(value: int | None) -> str:
    return "the default number of" if value is None else "unlimited" if value == 0 else str(value)


def _days_or_never(value: str) -> float:
    """Days from now, or 0 for 'never'."""
    return 0.0 if value.lower() == "never" else float(value)


def _print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    cells = [list(columns)] + [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())
