"""One query on a short-lived, read-only, time-bounded connection to any database.

On Postgres the session gets `default_transaction_read_only=on` and a `statement_timeout`,
and the query goes through the extended protocol as a prepared statement, so it is exactly
one statement (`SELECT 1; DELETE …` is refused) and `%` needs no escaping. Other databases
get SQLAlchemy's plain `text()` execution: give them a read-only role.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

__all__ = ["readonly_connect_args", "run_readonly_query"]


def readonly_connect_args(url: str, timeout: float) -> dict[str, Any]:
    """libpq options for a bounded, read-only session (Postgres URLs only)."""
    if not make_url(url).drivername.startswith("postgresql"):
        return {}
    millis = max(1, int(timeout * 1000))
    return {
        "connect_timeout": max(1, math.ceil(timeout)),
        "options": f"-c statement_timeout={millis} -c default_transaction_read_only=on",
        "application_name": "monitoring-readonly",
    }


def run_readonly_query(
    url: str, query: str, *, timeout: float, max_rows: int
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, at most max_rows rows); driver errors propagate to the caller."""
    engine = create_engine(
        url, poolclass=NullPool, connect_args=readonly_connect_args(url, timeout)
    )
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            if make_url(url).drivername == "postgresql+psycopg" and driver is not None:
                cursor = driver.execute(query, prepare=True)
                columns = [d.name for d in cursor.description or []]
                rows = [tuple(r) for r in cursor.fetchmany(max_rows)] if columns else []
            else:
                result = conn.execute(text(query))
                columns = list(result.keys()) if result.returns_rows else []
                rows = [tuple(r) for r in result.fetchmany(max_rows)] if columns else []
            conn.rollback()
    finally:
        engine.dispose()
    return columns, rows
