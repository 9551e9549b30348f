"""One query on a short-lived, read-only, time-bounded connection to a Postgres database.

The session gets `default_transaction_read_only=on` and a `statement_timeout`, and the query
goes through the extended protocol, so it is exactly one statement (`SELECT 1; DELETE …` is
refused) and `%` needs no escaping. Rows are streamed and the query is cancelled past
`max_rows`, so a huge result never reaches memory.

`self` (the monitoring database) runs as the reader role (`monitoring_core.db.reader_url`),
never as the application's role, with at most the reader's statement timeout. Other URLs are
an admin's own credentials: only `postgresql://` / `postgresql+psycopg://` (a `sqlite:///path`
URL would create files as the worker's user) and no libpq parameter that picks another
server or reads or writes files, TLS certificates aside.

Whatever the URL, the query is refused when the session's role is (or can become) a
superuser, can run programs, read or write server files or signal other backends, or can
read one of the monitoring database's secret tables (`monitoring_core.db.SECRET_TABLES`).
That also covers the embedded cluster, which trusts local socket connections: naming its
superuser or `monitoring_app` in a URL gets nothing.
"""

from __future__ import annotations

import math
from typing import Any

from psycopg import capabilities
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from monitoring_core.config import load_settings
from monitoring_core.db import READER_STATEMENT_TIMEOUT_S, SECRET_TABLES, reader_url

__all__ = [
    "SELF_URL",
    "PrivilegedRole",
    "RowCapExceeded",
    "UnusableUrl",
    "database_url_error",
    "readonly_connect_args",
    "resolve_url",
    "run_readonly_query",
]

SELF_URL = "self"  # the monitoring database itself, read as the reader role
DRIVERS = ("postgresql", "postgresql+psycopg")
# libpq parameters an admin's URL may carry; `service`, `passfile`, `options`,
# `sslkeylogfile` and the rest are refused (they pick servers, read or write files).
ALLOWED_PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "sslnegotiation",
        "channel_binding",
        "gssencmode",
        "require_auth",
        "target_session_attrs",
        "application_name",
        "connect_timeout",
        "host",  # a socket directory or host list, as libpq URLs put it
        "port",
    }
)
DANGEROUS_ROLES = (
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_signal_backend",
)
_PRIVILEGES = """
    SELECT
      EXISTS (SELECT 1 FROM pg_roles r WHERE pg_has_role(r.oid, 'MEMBER')
              AND (r.rolsuper OR r.rolname = ANY(%(dangerous)s))) AS privileged,
      EXISTS (SELECT 1 FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                AND c.relname = ANY(%(secret)s)
                AND has_any_column_privilege(c.oid, 'SELECT')) AS reads_secrets
"""


class UnusableUrl(ValueError):
    """A database URL the collectors and checks refuse to connect to."""


class RowCapExceeded(ValueError):
    """The query returned more rows than allowed."""


class PrivilegedRole(PermissionError):
    """The session's role could do more than read statistics and granted tables."""


def database_url_error(url: Any, *, allow_self: bool = True) -> str | None:
    """Why an admin-supplied database URL is refused, or None when it is usable (pure)."""
    if allow_self and url == SELF_URL:
        return None
    if not isinstance(url, str) or not url:
        return "is required"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "must be a postgresql+psycopg://user:password@host/database URL or 'self'"
    return _parsed_url_error(parsed)


def _parsed_url_error(parsed: URL) -> str | None:
    if parsed.drivername not in DRIVERS:
        return "only postgresql:// and postgresql+psycopg:// URLs are supported (or 'self')"
    if not parsed.database:
        return "must name a database"
    refused = sorted(set(parsed.query) - ALLOWED_PARAMETERS)
    if refused:
        return f"parameter(s) not allowed: {', '.join(refused)}"
    return None


def resolve_url(url: str) -> tuple[str, bool]:
    """(URL to connect to, whether it is the reader role); UnusableUrl when refused."""
    if url != SELF_URL:
        if message := database_url_error(url, allow_self=False):
            raise UnusableUrl(f"database URL {message}")
        return url, False
    reader = reader_url(load_settings())
    if reader is None:
        raise UnusableUrl(
            "'self' queries run as the read-only role monitoring_reader: set "
            "DATABASE_READER_URL to it (README 'Database roles')"
        )
    return reader, True


def readonly_connect_args(timeout: float) -> dict[str, Any]:
    """libpq options for a bounded, read-only session."""
    millis = max(1, int(timeout * 1000))
    return {
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": f"-c statement_timeout={millis} -c default_transaction_read_only=on",
        "application_name": "monitoring-readonly",
    }


def run_readonly_query(
    url: str, query: str, *, timeout: float, max_rows: int, truncate: bool = False
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, at most max_rows rows); more rows raise RowCapExceeded unless truncate.

    Driver errors propagate to the caller; so do UnusableUrl and RowCapExceeded.
    """
    target, is_reader = resolve_url(url)
    if is_reader:
        timeout = min(timeout, READER_STATEMENT_TIMEOUT_S)
    engine = create_engine(
        make_url(target).set(drivername="postgresql+psycopg"),
        poolclass=NullPool,
        connect_args=readonly_connect_args(timeout),
    )
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            _refuse_privileged(driver)
            columns, rows = _stream(driver, query, max_rows)
            conn.rollback()
    finally:
        engine.dispose()
    if len(rows) > max_rows and not truncate:
        raise RowCapExceeded(
            f"the query returned more than {max_rows:,} rows; aggregate it (GROUP BY) or LIMIT it"
        )
    return columns, rows[:max_rows]


def _refuse_privileged(driver: Any) -> None:
    found = driver.execute(
        _PRIVILEGES, {"dangerous": list(DANGEROUS_ROLES), "secret": list(SECRET_TABLES)}
    ).fetchone()
    if found[0]:
        raise PrivilegedRole(
            "refused: this database role is a superuser or may run programs, read server "
            "files or signal backends; connect as a role with SELECT rights only (pg_monitor)"
        )
    if found[1]:
        raise PrivilegedRole(
            "refused: this database role can read the monitoring system's secret tables; "
            "use 'self' (the monitoring_reader role) or a role of your own"
        )


def _stream(driver: Any, query: str, max_rows: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Up to max_rows + 1 rows; leaving the stream early cancels the query on the server."""
    chunk = min(max_rows + 1, 500) if capabilities.has_stream_chunked() else 1
    cursor = driver.cursor()
    rows: list[tuple[Any, ...]] = []
    columns: list[str] = []
    stream = cursor.stream(query, size=chunk)
    try:
        for row in stream:
            if not columns:
                columns = [d.name for d in cursor.description or []]
            rows.append(tuple(row))
            if len(rows) > max_rows:
                break
    finally:
        stream.close()
    if not rows:
        columns = [d.name for d in cursor.description or []]
    return columns, rows
