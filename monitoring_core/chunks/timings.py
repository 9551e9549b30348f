"""API timings in two forms, read as one: `api_timings` rows and `api_timing_packs`.

API timings older than a day (and passed by the API rollup) are packed column-wise
(`compaction.pack_api_timings`): one `api_timing_packs` row per half hour, method, endpoint
and status code, holding parallel arrays — microseconds after the half hour (int4), the
response times (float8, as stored) and the optional columns (NULL when no request of the pack
had one) — sorted by every column. About 12 bytes per request instead of ~150 as a row.

Every reader of raw API timings (the rollups' recomputation, the alert engine's windowed
signals, the Performance page through them, exports) reads `source_sql`: a subquery giving the
columns of `api_timings` from rows and packs both, in one statement and so one snapshot — a
pack committing meanwhile can neither hide nor double a request. Postgres does the unpacking
(`unnest`), so readers stay SQL; only packs that may hold a time in the span are opened.
"""

# SQL here is assembled from this module's constants and the caller's trusted expressions
# (bound-parameter names); no value is ever part of the text. Hence the S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from datetime import timedelta

__all__ = ["COLUMNS", "PACK", "PACK_SQL_WIDTH", "pack_columns_sql", "source_sql"]

PACK = timedelta(minutes=30)
PACK_SQL_WIDTH = "interval '30 minutes'"
# The columns every reader gets, in `api_timings` order (ingested_at: a pack's packed_at).
COLUMNS = (
    "time",
    "method",
    "endpoint",
    "status_code",
    "response_time_ms",
    "user_type",
    "database_query_time_ms",
    "external_api_time_ms",
    "cache_hit",
    "request_id",
    "ingested_at",
)
_UNPACKED = (
    "p.start_time + u.o * interval '1 microsecond' AS time, p.method, p.endpoint, "
    "p.status_code, u.d AS response_time_ms, u.ut AS user_type, u.db AS database_query_time_ms, "
    "u.ex AS external_api_time_ms, u.ch AS cache_hit, u.rid AS request_id, "
    "p.packed_at AS ingested_at"
)
_UNNEST = (
    "CROSS JOIN LATERAL unnest(p.offsets, p.durations, p.user_types, p.db_ms, p.external_ms, "
    "p.cache_hits, p.request_ids) AS u(o, d, ut, db, ex, ch, rid)"
)


def source_sql(lo: str, hi: str, *, closed: str = "left") -> str:
    """A parenthesised subquery of every API timing with time in [lo, hi) (`closed="left"`)
    or (lo, hi] (`"right"`), columns `COLUMNS`. lo/hi are trusted SQL expressions (bound
    parameter names such as ":lo" or "%(lo)s", or constants of the caller)."""
    if closed == "left":
        rows_in, packs_in = f"time >= {lo} AND time < {hi}", f"p.start_time < {hi}"
    elif closed == "right":
        rows_in, packs_in = f"time > {lo} AND time <= {hi}", f"p.start_time <= {hi}"
    else:
        raise ValueError(f"closed must be 'left' or 'right', not {closed!r}")
    cols = ", ".join(COLUMNS)
    return (
        f"(SELECT {cols} FROM api_timings WHERE {rows_in} "
        f"UNION ALL SELECT * FROM (SELECT {_UNPACKED} FROM api_timing_packs p {_UNNEST} "
        f"WHERE p.start_time > {lo} - {PACK_SQL_WIDTH} AND {packs_in}) u WHERE {rows_in})"
    )


def pack_columns_sql(rows: str) -> str:
    """SELECT packing `rows` (a FROM item with the `api_timings` columns) per half hour,
    method, endpoint and status: the columns of an `api_timing_packs` row but packed_at.
    Every array is ordered by every column, so they stay parallel (ties are identical rows)."""
    order = (
        "ORDER BY time, response_time_ms, user_type, database_query_time_ms, "
        "external_api_time_ms, cache_hit, request_id"
    )
    start = f"date_bin({PACK_SQL_WIDTH}, time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"

    def optional(column: str) -> str:
        return f"CASE WHEN count({column}) > 0 THEN array_agg({column} {order}) END"

    return (
        f"SELECT {start} AS start_time, method, endpoint, status_code, count(*)::int4 AS count, "
        f"array_agg((extract(epoch FROM time - {start}) * 1000000)::int4 {order}) AS offsets, "
        f"array_agg(response_time_ms {order}) AS durations, "
        f"{optional('user_type')} AS user_types, {optional('database_query_time_ms')} AS db_ms, "
        f"{optional('external_api_time_ms')} AS external_ms, "
        f"{optional('cache_hit')} AS cache_hits, {optional('request_id')} AS request_ids "
        f"FROM {rows} GROUP BY 1, 2, 3, 4"
    )
