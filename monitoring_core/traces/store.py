"""COPY writers for `spans` (the caller owns the transaction; partitions must exist)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from monitoring_core.ingest.copy import copy_rows, jsonb_binary

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
_NO_EVENTS = jsonb_binary([])
# jsonb columns travel as their binary wire form (version 1, then the JSON text) written by
# orjson, through the bytea dumper: psycopg's Jsonb wrapper cost ~2 µs a value in Python.
_COPY_TYPES = [
    "bytea" if i in (*_JSONB, _RESOURCE) else kind for i, (_, kind) in enumerate(SPAN_COLUMNS)
]


def insert_spans(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """COPY span rows (SPAN_COLUMNS order); returns the count."""
    if not rows:
        return 0
    resources: dict[int, tuple[Any, bytes]] = {}

    def out(row: Sequence[Any]) -> tuple[Any, ...]:
        resource = row[_RESOURCE]
        seen = resources.get(id(resource))
        if seen is None or seen[0] is not resource:
            seen = resources[id(resource)] = (resource, jsonb_binary(resource))
        events = jsonb_binary(row[11]) if row[11] else _NO_EVENTS  # most spans have none
        return (*row[:10], jsonb_binary(row[10]), events, seen[1], row[13])

    return copy_rows(conn, "spans", [name for name, _ in SPAN_COLUMNS], _COPY_TYPES, map(out, rows))
