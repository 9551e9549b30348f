"""Binary COPY into a table on the SQLAlchemy connection's own transaction (REFERENCE.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import sql
from sqlalchemy import Connection

__all__ = ["copy_rows"]


def copy_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    """Write rows with `COPY … FROM STDIN (FORMAT BINARY)`; the caller commits. Returns the count."""
    pg = conn.connection.driver_connection
    assert pg is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with pg.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
