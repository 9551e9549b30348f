"""COPY writer for `log_records` (the caller owns the transaction; partitions must exist)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from monitoring_core.ingest.copy import copy_rows

__all__ = ["LOG_COLUMNS", "insert_logs"]

LOG_COLUMNS = (
    ("time", "timestamptz"),
    ("severity_number", "int2"),
    ("severity_text", "text"),
    ("body", "text"),
    ("trace_id", "text"),
    ("span_id", "text"),
    ("service", "text"),
    ("attributes", "jsonb"),
    ("resource", "jsonb"),
)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def insert_logs(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """COPY log rows (LOG_COLUMNS order); returns the count."""
    if not rows:
        return 0
    return copy_rows(
        conn,
        "log_records",
        [name for name, _ in LOG_COLUMNS],
        [kind for _, kind in LOG_COLUMNS],
        ((*row[:7], Jsonb(row[7], dumps=_dumps), Jsonb(row[8], dumps=_dumps)) for row in rows),
    )
