"""Writing `log_records` (the caller owns the transaction; partitions must exist).

Rows go in blocks: one per service and UTC day of a batch, its id from `log_block_seq`. Every
row carries its block id; the block's earliest row also carries `block_trgm` (the distinct
body trigrams and words of the block and its trace ids' codes, `logs.trigrams`) and `block_end` (its latest time), which the
substring search reads through a GIN index (`logs.queries`). Every write adds its records and
body bytes to `log_volume` (per UTC day and service); `admit` applies the daily cap first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.ingest.copy import copy_rows, int4_array_binary, jsonb_binary
from monitoring_core.logs.trigrams import block_summary

__all__ = [
    "CAP_SETTING",
    "LOG_COLUMNS",
    "Admission",
    "admit",
    "block_rows",
    "copy_block_rows",
    "insert_logs",
]

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
_BLOCK_COLUMNS = (("block", "int8"), ("block_trgm", "int4[]"), ("block_end", "timestamptz"))
CAP_SETTING = "MONITORING_LOG_RECORDS_PER_SERVICE_DAY"
_SERVICE, _BODY, _TRACE = 6, 3, 4  # positions in LOG_COLUMNS order
# attributes and resource as jsonb's binary wire form through the bytea dumper (traces.store)
_COPY_TYPES = [
    *("bytea" if kind == "jsonb" else kind for _, kind in LOG_COLUMNS),
    *("bytea" if kind == "int4[]" else kind for _, kind in _BLOCK_COLUMNS),
]  # block_trgm too, as array_recv's binary form (int4_array_binary)
_COPY_NAMES = [name for name, _ in (*LOG_COLUMNS, *_BLOCK_COLUMNS)]

_IDS = text("SELECT nextval('log_block_seq') FROM generate_series(1, :n)")
_ADD_VOLUME = text(
    """
    INSERT INTO log_volume AS v (day, service, records, body_bytes, refused)
    SELECT * FROM unnest(CAST(:days AS date[]), CAST(:services AS text[]),
                         CAST(:records AS bigint[]), CAST(:bytes AS bigint[]),
                         CAST(:refused AS bigint[]))
    ORDER BY 1, 2
    ON CONFLICT (day, service) DO UPDATE
    SET records = v.records + EXCLUDED.records, body_bytes = v.body_bytes + EXCLUDED.body_bytes,
        refused = v.refused + EXCLUDED.refused
    """
)
_VOLUME = text(
    "SELECT day, service, records FROM log_volume"
    " WHERE (day, service) IN (SELECT * FROM unnest(CAST(:days AS date[]),"
    " CAST(:services AS text[])))"
)


def _groups(rows: Sequence[Sequence[Any]]) -> dict[tuple[date, str], list[Sequence[Any]]]:
    out: dict[tuple[date, str], list[Sequence[Any]]] = {}
    for row in rows:
        out.setdefault((row[0].date(), row[_SERVICE]), []).append(row)
    return out


def _add_volume(conn: Connection, counts: dict[tuple[date, str], tuple[int, int, int]]) -> None:
    if not counts:
        return
    keys = sorted(counts)  # rows locked in key order: concurrent writers never deadlock
    conn.execute(
        _ADD_VOLUME,
        {
            "days": [k[0] for k in keys],
            "services": [k[1] for k in keys],
            "records": [counts[k][0] for k in keys],
            "bytes": [counts[k][1] for k in keys],
            "refused": [counts[k][2] for k in keys],
        },
    )


def _resource(seen: dict[int, tuple[Any, bytes]], value: Any) -> bytes:
    known = seen.get(id(value))
    if known is None or known[0] is not value:
        known = seen[id(value)] = (value, jsonb_binary(value))
    return known[1]


def block_rows(
    members: Sequence[Sequence[Any]], block: int, resources: dict[int, tuple[Any, bytes]]
) -> tuple[list[tuple[Any, ...]], int]:
    """One block's rows in COPY form (`copy_block_rows`) and its bodies' UTF-8 bytes: every
    row carries the block id, the earliest also its codes and latest time. `resources`
    remembers the resources already encoded (a request's records share one)."""
    codes, size = block_summary([row[_BODY] for row in members], [row[_TRACE] for row in members])
    times = [row[0] for row in members]
    first, end = times.index(min(times)), max(times)
    out = [
        (*row[:7], jsonb_binary(row[7]), _resource(resources, row[8]), block, None, None)
        for row in members
    ]
    out[first] = (*out[first][:10], int4_array_binary(codes), end)
    return out, size


def copy_block_rows(conn: Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY rows built by `block_rows` into `log_records`; the count."""
    return copy_rows(conn, "log_records", _COPY_NAMES, _COPY_TYPES, rows)


def insert_logs(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """COPY log rows (LOG_COLUMNS order) in blocks, add them to `log_volume`; the count."""
    if not rows:
        return 0
    groups = _groups(rows)
    ids = [row[0] for row in conn.execute(_IDS, {"n": len(groups)})]
    out: list[tuple[Any, ...]] = []
    volume: dict[tuple[date, str], tuple[int, int, int]] = {}
    resources: dict[int, tuple[Any, bytes]] = {}  # a resource is shared by its records
    for block, (key, members) in zip(ids, groups.items(), strict=True):
        built, size = block_rows(members, block, resources)
        out += built
        volume[key] = (len(members), size, 0)
    count = copy_block_rows(conn, out)
    _add_volume(conn, volume)
    return count


@dataclass
class Admission:
    """Rows within the daily cap, how many were refused, and the first reason."""

    rows: list[Sequence[Any]]
    refused: int = 0
    reason: str = ""


def admit(conn: Connection, rows: Sequence[Sequence[Any]], cap: int) -> Admission:
    """The rows a service may still store today under `cap` records per UTC day (0: no cap).

    The refused ones are counted in `log_volume.refused`. Two writers admitting at the same
    moment may together pass the cap by at most one batch each: the count is read without a
    lock, so that ingest of one service is never serialised behind one row.
    """
    if cap <= 0 or not rows:
        return Admission(list(rows))
    groups = _groups(rows)
    keys = list(groups)
    stored = {
        (row.day, row.service): row.records
        for row in conn.execute(
            _VOLUME, {"days": [k[0] for k in keys], "services": [k[1] for k in keys]}
        )
    }
    out = Admission([])
    refused: dict[tuple[date, str], tuple[int, int, int]] = {}
    for key, members in groups.items():
        room = max(0, cap - stored.get(key, 0))
        out.rows += members[:room]
        if len(members) > room:
            refused[key] = (0, 0, len(members) - room)
            out.refused += len(members) - room
            out.reason = out.reason or (
                f"service {key[1]!r} reached its daily cap of {cap:,} log records on {key[0]}"
                f" ({CAP_SETTING}); {len(members) - room} refused"
            )
    _add_volume(conn, refused)
    return out
