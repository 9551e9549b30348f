"""Backup and restore of the whole database with pg_dump / pg_restore (docs/OPERATIONS.md).

`backup` writes pg_dump's custom format (compressed; one consistent snapshot, taken while the
API and worker keep writing). `restore` loads such a file into an empty database only, in one
transaction: a half-restored database is never left behind. The binaries are the embedded
Postgres's own (pgserver ships them), else the first on PATH; `--pg-bin DIR` names a
directory to use instead (client tools of the server's major version or newer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitoring_core.db import ROLES, make_engine

__all__ = [
    "SCHEDULE_SETTING",
    "BackupError",
    "BackupResult",
    "Schedule",
    "backup",
    "parse_schedule",
    "pg_binary",
    "restore",
    "run_schedule",
    "table_counts",
]


class BackupError(RuntimeError):
    """pg_dump/pg_restore missing or failed, or the restore target is not empty."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    seconds: float


def pg_binary(name: str, *, directory: str | None = None) -> str:
    """The path of pg_dump/pg_restore: `directory`, pgserver's own, then PATH."""
    candidates = []
    if directory:
        candidates.append(Path(directory) / name)
    try:
        import pgserver

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    except ImportError:  # pragma: no cover - pgserver is a runtime dependency
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools")
    return found


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore connection arguments and environment for a SQLAlchemy URL; the
    password goes in PGPASSWORD, never on the command line (other users can read that)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    args = [f"--dbname={parsed.database}"]
    if host:
        args.append(f"--host={host if isinstance(host, str) else host[0]}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [x for x in done.stderr.splitlines() if x.strip()][-5:]
        raise BackupError(f"{Path(command[0]).name} failed: " + " | ".join(lines))


def backup(url: str, path: Path, *, bin_dir: str | None = None) -> BackupResult:
    """Dump the database at `url` to `path` (custom format), written whole or not at all."""
    args, env = _libpq(url)
    partial = path.with_name(path.name + ".partial")
    started = time.monotonic()
    # zlib level 1: 3.5x faster than pg_dump's default level for a 10 % larger file (the
    # embedded binaries have no lz4/zstd); the dump's CPU time is what a backup waits for.
    command = [
        pg_binary("pg_dump", directory=bin_dir),
        "--format=custom",
        "--compress=1",
        "--no-password",
    ]
    _run([*command, f"--file={partial}", *args], env)
    partial.replace(path)
    return BackupResult(path, path.stat().st_size, time.monotonic() - started)


def _relations(url: str) -> tuple[int, set[str]]:
    """(tables in the public schema, which of our roles exist) at `url`."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                    " AND relkind IN ('r', 'p')"
                )
            ).scalar_one()
            roles = conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:r)"),
                {"r": list(ROLES)},
            ).scalars()
            return int(tables), set(roles)
    finally:
        engine.dispose()


def restore(url: str, path: Path, *, bin_dir: str | None = None) -> float:
    """Load a `backup` file into the empty database at `url`; seconds taken.

    Refuses a database that already has tables (restore into a new one). Owners become the
    restoring role; grants to the app and reader roles are kept when those roles exist.
    """
    if not path.is_file():
        raise BackupError(f"no backup file {path}")
    tables, roles = _relations(url)
    if tables:
        raise BackupError(
            f"the target database already has {tables} tables: restore into an empty database "
            "(a new MONITORING_DATA_DIR, or createdb and DATABASE_URL)"
        )
    args, env = _libpq(url)
    started = time.monotonic()
    command = [
        pg_binary("pg_restore", directory=bin_dir),
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
    ]
    if roles != set(ROLES):
        command.append("--no-acl")  # grants name roles this cluster does not have
    _run([*command, *args, str(path)], env)
    return time.monotonic() - started


def table_counts(conn: Any) -> dict[str, int]:
    """Rows per table of the public schema (partitions counted in their parent)."""
    names = conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname"
        )
    ).scalars()
    quote = conn.dialect.identifier_preparer.quote
    return {
        name: int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())  # noqa: S608
        for name in list(names)
    }


# ---------------------------------------------------------------- scheduled backups (worker)
SCHEDULE_SETTING = "backup_schedule"  # settings row: {"directory", "every_hours", "keep"}
_NAME = "monitoring-%Y%m%dT%H%M%SZ.dump"


@dataclass(frozen=True)
class Schedule:
    directory: Path
    every_hours: float
    keep: int


def parse_schedule(value: Any) -> Schedule:
    """A schedule from its settings value; ValueError naming what is wrong."""
    if not isinstance(value, dict) or set(value) - {"directory", "every_hours", "keep"}:
        raise ValueError("must be {directory, every_hours, keep}")
    directory, every, keep = (
        value.get("directory"),
        value.get("every_hours", 24),
        value.get("keep", 7),
    )
    if not isinstance(directory, str) or not directory.startswith("/"):
        raise ValueError("directory must be an absolute path")
    if isinstance(every, bool) or not isinstance(every, int | float) or every < 1:
        raise ValueError("every_hours must be a number >= 1")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError("keep must be a whole number >= 1")
    return Schedule(Path(directory), float(every), keep)


def _taken_at(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.name, _NAME).replace(tzinfo=UTC)
    except ValueError:
        return None  # not one of ours: never deleted


def _ours(directory: Path) -> list[tuple[datetime, Path]]:
    found = [(_taken_at(p), p) for p in directory.glob("monitoring-*.dump")]
    return sorted((t, p) for t, p in found if t is not None)


def run_schedule(url: str, schedule: Schedule, *, now: datetime) -> str:
    """Take a backup when the newest is `every_hours` old, then keep only the newest `keep`."""
    schedule.directory.mkdir(parents=True, exist_ok=True)
    taken = _ours(schedule.directory)
    if taken and now - taken[-1][0] < timedelta(hours=schedule.every_hours):
        return f"not due (last {taken[-1][1].name})"
    done = backup(url, schedule.directory / now.astimezone(UTC).strftime(_NAME))
    taken = _ours(schedule.directory)
    for _, old in taken[: max(0, len(taken) - schedule.keep)]:
        old.unlink(missing_ok=True)
    return f"{done.path.name}: {done.bytes:,} bytes in {done.seconds:.1f} s"
