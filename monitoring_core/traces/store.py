"""COPY writers for `spans` (the caller owns the transaction; partitions must exist)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from monitoring_core.ingest.copy import copy_rows

__all__ = ["SPAN_COLUMNS", "insert_spans"]

SPAN_COLUMNS = (
    ("time", "timestamptz"),
    ("trace_id", "text"),
    ("span_id", "text"),
    ("parent_span_id", "text"),
    ("service", "text"),
    ("name", "text"),
    ("kind", "int2"),
    ("duration_ms", "float8"),
    ("status_code", "int2"),
    ("status_message", "text"),
    ("attributes", "jsonb"),
    ("events", "jsonb"),
    ("resource", "jsonb"),
    ("scope", "text"),
)
_JSONB = (10, 11)  # positions of the per-span jsonb columns
_RESOURCE = 12  # the resource: one dict shared by a request's spans, dumped once


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _row(row: Sequence[Any], resources: dict[int, Any]) -> list[Any]:
    out = list(row)
    for i in _JSONB:
        out[i] = Jsonb(out[i], dumps=_dumps)
    value = out[_RESOURCE]
    wrapped = resources.get(id(value))
    if wrapped is None or wrapped.obj is not value:
        encoded = _dumps(value)
        wrapped = resources[id(value)] = Jsonb(value, dumps=lambda _: encoded)
    out[_RESOURCE] = wrapped
    return out


def insert_spans(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """COPY span rows (SPAN_COLUMNS order); returns the count."""
    if not rows:
        return 0
    resources: dict[int, Any] = {}
    return copy_rows(
        conn,
        "spans",
        [name for name, _ in SPAN_COLUMNS],
        [kind for _, kind in SPAN_COLUMNS],
        (_row(row, resources) for row in rows),
    )
