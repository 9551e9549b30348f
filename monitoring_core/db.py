"""Engine construction, the embedded Postgres, and the database roles the application runs as.

Least privilege (README "Database roles"): the application never runs as a superuser.

- `monitoring_app` (LOGIN, NOSUPERUSER, NOCREATEDB, NOCREATEROLE) owns the monitoring database,
  its `public` schema and every table; the API, the worker, the UI and migrations connect as
  it. An external `DATABASE_URL` needs only this: a role that owns its database (plus
  `pg_monitor` if the built-in database collector should see other roles' sessions).
- `monitoring_reader` (LOGIN, NOSUPERUSER, member of `pg_monitor`) runs the `self` SQL
  collectors and `self` database checks. It reads `pg_stat_*` and only the tables an admin
  grants it (`GRANT SELECT ON business_events TO monitoring_reader`); the secret tables
  (`SECRET_TABLES`) are revoked from it on every start. Its sessions default to read-only
  transactions and a 5 s statement timeout. An external database sets `DATABASE_READER_URL`
  to such a role; without it `self` queries are refused.

- `monitoring_scoped` (LOGIN, owns nothing) reads for users limited to organisations: only the
  organisation tables, row by row under row-level security (`org_scope`, migration 0024).
  An external database sets `DATABASE_SCOPED_URL` to such a role; without it organisation-
  scoped users cannot sign in.

For the embedded cluster (no `DATABASE_URL`) `ensure_roles` creates the roles with random
passwords kept in `MONITORING_DATA_DIR/db-roles.json` (mode 600) and hands the database and
everything in it to `monitoring_app`, which also upgrades a cluster created before the roles
existed. The embedded cluster listens only on a Unix socket in its data directory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from monitoring_core.config import Settings

__all__ = [
    "APP_ROLE",
    "READER_ROLE",
    "SCOPED_ROLE",
    "READER_STATEMENT_TIMEOUT_S",
    "SECRET_TABLES",
    "DatabaseUnavailable",
    "database_url",
    "embedded_url",
    "engine_from_settings",
    "ensure_roles",
    "grant_reader_select",
    "make_engine",
    "ping",
    "reader_url",
    "scoped_url",
]

log = logging.getLogger(__name__)
EMBEDDED_DB_NAME = "monitoring"
APP_ROLE = "monitoring_app"
READER_ROLE = "monitoring_reader"
SCOPED_ROLE = "monitoring_scoped"
ROLES = (APP_ROLE, READER_ROLE, SCOPED_ROLE)
READER_STATEMENT_TIMEOUT_S = 5.0
ROLES_FILE = "db-roles.json"
# Never readable by the reader role, whatever an admin granted: credentials, channel URLs,
# check configs (headers, tokens), collector URLs (passwords), settings and the audit log.
SECRET_TABLES = (
    "api_keys",
    "users",
    "sessions",
    "notification_channels",
    "sql_collectors",
    "health_checks",
    "settings",
    "audit_log",
)
_servers: dict[Path, Any] = {}
_embedded_roles: dict[Path, tuple[str, str]] = {}  # pgdata -> (app URL, reader URL)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached."""


def _embedded_server(data_dir: Path, keep_running: bool) -> tuple[Path, Any]:
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        import fcntl

        # Processes starting at once (API, worker, UI; parallel test sessions) take turns: the
        # first may restart the fresh cluster (_ensure_lock_space) under the others' feet.
        with (
            open(data_dir / ".pg-start.lock", "a") as lock,
            warnings.catch_warnings(),
        ):
            fcntl.flock(lock, fcntl.LOCK_EX)
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

            _servers[pgdata] = pgserver.get_server(
                pgdata, cleanup_mode=None if keep_running else "stop"
            )
            _ensure_lock_space(pgdata, _servers[pgdata])
    return pgdata, _servers[pgdata]


EMBEDDED_MAX_LOCKS = 1024


def _ensure_lock_space(pgdata: Path, server: Any) -> None:
    """Room in the lock table for day partitions: dropping or emptying many partitions in one
    transaction takes a lock for each partition and index, and Postgres' default (64 per
    connection) runs out once a few sessions do it at once. Raised once per cluster (a
    restart right after it starts, before anything else uses it)."""
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        row = conn.execute("SHOW max_locks_per_transaction").fetchone()
        if row is not None and int(row[0]) >= EMBEDDED_MAX_LOCKS:
            return
        conn.execute(f"ALTER SYSTEM SET max_locks_per_transaction = {EMBEDDED_MAX_LOCKS}")
    from pgserver import _commands

    pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import, per binary
    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user=server.system_user, timeout=30)


def embedded_url(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or attach to) the embedded Postgres under data_dir; its SUPERUSER URL.

    The first process starts the server; others attach to the running one (pgserver keeps a
    list of attached pids and stops the server when the last one exits, unless keep_running).
    As root, pgserver runs Postgres as a dedicated system user, since Postgres refuses root.
    Only `database_url` (roles) and the test suite (creating databases) use this URL.
    """
    _, server = _embedded_server(data_dir, keep_running)
    _ensure_database(server.get_uri())
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg", database=EMBEDDED_DB_NAME)
    return url.render_as_string(hide_password=False)


def _ensure_database(admin_uri: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                # another process created it a moment ago: a CREATE that loses the race
                # in the catalog's unique index says UniqueViolation (ci22, two test
                # sessions starting on a fresh cluster), not DuplicateDatabase
                pass


def _role_passwords(secrets_file: Path) -> tuple[dict[str, str], set[str]]:
    """(The roles' passwords, the roles whose password is new): secrets_file, made (mode 600)
    if missing, and completed when a newer release added a role. Processes starting at once
    (API, worker, UI; test sessions) take turns under a lock file, so they agree."""
    import fcntl

    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = secrets_file.with_name(f".{secrets_file.name}.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found: dict[str, str] = {}
        if secrets_file.exists():
            found = {k: str(v) for k, v in json.loads(secrets_file.read_text()).items()}
        new = {role for role in ROLES if role not in found}
        if new:
            found |= {role: secrets.token_urlsafe(24) for role in new}
            draft = secrets_file.with_name(f".{secrets_file.name}.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(found, handle)
            os.replace(draft, secrets_file)  # whole or not at all, mode 600 from the start
    return {role: found[role] for role in ROLES}, new


def ensure_roles(superuser_url: str, database: str, *, secrets_file: Path) -> tuple[str, str]:
    """Create/repair the app and reader roles for `database`; (app URL, reader URL). Idempotent.

    Run as a superuser. The database, its public schema and every relation in it go to
    APP_ROLE (upgrading databases created by the superuser); the reader loses the secret tables.
    """
    import psycopg

    passwords, fresh = _role_passwords(secrets_file)
    server = make_url(superuser_url).set(drivername="postgresql", database=database)
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as conn:
        _with_retry(lambda: _define_roles(conn, passwords, new=fresh))
        _with_retry(lambda: _hand_over(conn, database))
    urls = []
    for role in (APP_ROLE, READER_ROLE):
        url = make_url(superuser_url).set(
            drivername="postgresql+psycopg", username=role, password=passwords[role]
        )
        urls.append(url.set(database=database).render_as_string(hide_password=False))
    return urls[0], urls[1]


def _with_retry(step: Any, attempts: int = 5) -> None:
    """Role catalog rows are cluster-wide: two databases' starts can collide on them."""
    import psycopg

    for attempt in range(attempts):
        try:
            step()
            return
        except (
            psycopg.errors.DuplicateObject,
            psycopg.errors.UniqueViolation,
            psycopg.errors.InternalError_,  # "tuple concurrently updated"
        ):
            if attempt == attempts - 1:
                raise
            log.info("role setup collided with another process; retrying")


def _define_roles(conn: Any, passwords: dict[str, str], *, new: set[str]) -> None:
    from psycopg import sql

    limits = sql.SQL("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN")
    for role in ROLES:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        statement = sql.SQL("ALTER ROLE {} {}" if exists else "CREATE ROLE {} {}").format(
            sql.Identifier(role), limits
        )
        if role in new or not exists:
            # Only when new: statement texts are visible in pg_stat_activity for a moment.
            # Role DDL takes no bind parameters; psycopg quotes the password as a literal.
            statement += sql.SQL(" PASSWORD {}").format(sql.Literal(passwords[role]))
        conn.execute(statement)
    app, reader = sql.Identifier(APP_ROLE), sql.Identifier(READER_ROLE)
    scoped = sql.Identifier(SCOPED_ROLE)
    timeout = f"{int(READER_STATEMENT_TIMEOUT_S * 1000)}ms"
    for statement in (
        # The built-in database collector (as the app) sees every session's statistics too.
        sql.SQL("GRANT pg_monitor TO {}, {}").format(app, reader),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(reader),
        sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(reader, sql.Literal(timeout)),
        sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '10s'").format(reader),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(scoped),
        sql.SQL("ALTER ROLE {} SET statement_timeout = '30s'").format(scoped),
    ):
        conn.execute(statement)


_FOREIGN_RELATIONS = """
    SELECT c.relkind, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND NOT (c.relkind = 'S' AND EXISTS (  -- identity/serial sequences follow their table
          SELECT 1 FROM pg_depend d
          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
            AND d.deptype IN ('a', 'i')))
    ORDER BY c.relkind = 'S', c.oid
"""
_RELATION_KEYWORDS = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}


def _hand_over(conn: Any, database: str) -> None:
    """One statement per transaction (autocommit): a big database's first hand-over would
    otherwise hold a lock per partition at once and can exhaust the shared lock table."""
    import psycopg
    from psycopg import sql

    app, reader = sql.Identifier(APP_ROLE), sql.Identifier(READER_ROLE)
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), app))
    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(app))
    for kind, schema, name in conn.execute(_FOREIGN_RELATIONS, (APP_ROLE,)).fetchall():
        keyword = sql.SQL(_RELATION_KEYWORDS.get(kind, "TABLE"))
        relation = sql.Identifier(schema, name)
        try:
            conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(keyword, relation, app))
        except psycopg.errors.UndefinedTable:
            pass  # dropped meanwhile (retention)
    conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
    _grant_scoped(conn)
    present = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relname = ANY(%s)",
        (list(SECRET_TABLES),),
    ).fetchall()
    for (table,) in present:
        conn.execute(
            sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(sql.Identifier(table), reader)
        )


# What the organisation-scoped role may read (each under its RLS policy, migration 0024).
SCOPED_TABLES = (
    "error_events",
    "error_groups",
    "error_group_members",
    "error_group_changes",
    "business_events",
    "incidents",
    "incident_error_groups",
)


def _grant_scoped(conn: Any) -> None:
    """The scoped role's rights, on every start (the migration grants them only when the role
    already existed; an upgrade makes the role after the tables)."""
    from psycopg import sql

    scoped = sql.Identifier(SCOPED_ROLE)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(scoped))
    function = conn.execute("SELECT to_regprocedure('public.monitoring_scope_orgs()')").fetchone()
    if function is None or function[0] is None:
        return  # before migration 0024: the migration grants
    for table in SCOPED_TABLES:
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), scoped))
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION public.monitoring_scope_orgs() TO {}").format(scoped)
    )


def grant_reader_select(conn: Connection, tables: list[str]) -> bool:
    """GRANT SELECT on `tables` to the reader role (never a secret table); False without it."""
    secret = sorted(set(tables) & set(SECRET_TABLES))
    if secret:
        raise ValueError(f"{', '.join(secret)} must never be readable by {READER_ROLE}")
    found = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": READER_ROLE})
    if found.first() is None:
        return False
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        conn.execute(text(f"GRANT SELECT ON {quote(table)} TO {quote(READER_ROLE)}"))
    return True


def database_url(settings: Settings, *, keep_running: bool = False) -> str:
    """DATABASE_URL when set, else the embedded server's URL as APP_ROLE (roles made if needed)."""
    if settings.database_url:
        return settings.database_url
    return _embedded_role_urls(settings.data_dir, keep_running)[0]


def _embedded_role_urls(data_dir: Path, keep_running: bool) -> tuple[str, str]:
    pgdata, _ = _embedded_server(data_dir, keep_running)
    if pgdata not in _embedded_roles:
        superuser = embedded_url(data_dir, keep_running=keep_running)
        _embedded_roles[pgdata] = ensure_roles(
            superuser, EMBEDDED_DB_NAME, secrets_file=data_dir / ROLES_FILE
        )
    return _embedded_roles[pgdata]


def reader_url(settings: Settings) -> str | None:
    """The URL `self` queries use: DATABASE_READER_URL, else the embedded cluster's reader.

    None for an external DATABASE_URL without DATABASE_READER_URL, and for an embedded
    cluster this process has not opened (so resolving `self` never starts a server).
    """
    if settings.database_reader_url:
        return settings.database_reader_url
    if settings.database_url:
        return None
    found = _embedded_roles.get((settings.data_dir / "pg").resolve())
    return found[1] if found else None


def scoped_url(settings: Settings) -> str | None:
    """The URL organisation-scoped reads use: DATABASE_SCOPED_URL, else the embedded cluster's
    `monitoring_scoped` role; None for an external database without it, and for an embedded
    cluster this process has not opened."""
    if settings.database_scoped_url:
        return settings.database_scoped_url
    if settings.database_url:
        return None
    pgdata = (settings.data_dir / "pg").resolve()
    found = _embedded_roles.get(pgdata)
    if not found:
        return None
    passwords, _ = _role_passwords(settings.data_dir / ROLES_FILE)
    url = make_url(found[0]).set(username=SCOPED_ROLE, password=passwords[SCOPED_ROLE])
    return url.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with pre-ping so a restarted database is reconnected transparently."""
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "connect_args": {"connect_timeout": 5, "application_name": "monitoring"},
    }
    options.update(kwargs)
    return create_engine(url, **options)


def ping(engine: Engine) -> bool:
    """True when the database answers SELECT 1."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        log.warning("database ping failed", exc_info=True)
        return False


def engine_from_settings(
    settings: Settings, *, keep_running: bool = False, **kwargs: Any
) -> Engine:
    """The process entry points' way to get an engine (embedded server started if needed)."""
    return make_engine(database_url(settings, keep_running=keep_running), **kwargs)
