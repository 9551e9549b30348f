"""API timings in two forms, read as one: `api_timings` rows and `api_timing_packs`.

API timings older than a day (and passed by the API rollup) are packed column-wise
(`compaction.pack_api_timings`): one `api_timing_packs` row per half hour, method, endpoint
and status code, holding parallel arrays — microseconds after the half hour (int4), the
response times (float8, as stored) and the optional columns (NULL when no request of the pack
had one) — sorted by every column. About 12 bytes per request instead of ~150 as a row.

A sparse key (fewer than `SPARSE` requests per half hour) would pay a pack row's overhead
every half hour (~76 B a request at 13 requests); once its day is past, its half-hour packs
are merged into one **day pack** (`compaction.repack_sparse_days`): start_time is the day,
`slots` holds each request's half hour of the day (int2, 0-47) and `offsets` stay
microseconds after that half hour. `end_time` is a pack's last request (NULL in packs
written before migration 0029: the end of their half hour stands for it).

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

__all__ = [
    "COLUMNS",
    "DAY_PACK_SQL_WIDTH",
    "PACK",
    "PACK_NAMES",
    "PACK_SQL_WIDTH",
    "SPARSE",
    "pack_columns_sql",
    "source_sql",
    "unpacked_sql",
]

PACK = timedelta(minutes=30)
PACK_SQL_WIDTH = "interval '30 minutes'"
DAY_PACK_SQL_WIDTH = "interval '1 day'"  # the widest pack
SPARSE = 100  # requests per half-hour pack under which a key's past day becomes one pack
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
    "p.start_time + coalesce(u.h, 0) * interval '30 minutes' + u.o * interval '1 microsecond' "
    "AS time, p.method, p.endpoint, "
    "p.status_code, u.d AS response_time_ms, u.ut AS user_type, u.db AS database_query_time_ms, "
    "u.ex AS external_api_time_ms, u.ch AS cache_hit, u.rid AS request_id, "
    "p.packed_at AS ingested_at"
)
_UNNEST = (
    "CROSS JOIN LATERAL unnest(p.offsets, p.slots, p.durations, p.user_types, p.db_ms, "
    "p.external_ms, p.cache_hits, p.request_ids) AS u(o, h, d, ut, db, ex, ch, rid)"
)


# The columns of an api_timing_packs row as pack_columns_sql gives them (packed_at aside).
PACK_NAMES = (
    "start_time, method, endpoint, status_code, count, offsets, durations, user_types, db_ms, "
    "external_ms, cache_hits, request_ids, slots, end_time"
)


def unpacked_sql(packs: str) -> str:
    """SELECT of every request of `packs` (a FROM item with the api_timing_packs columns),
    columns `COLUMNS`."""
    return f"SELECT {_UNPACKED} FROM {packs} p {_UNNEST}"


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
        f"WHERE p.start_time > {lo} - {DAY_PACK_SQL_WIDTH} AND {packs_in} "
        f"AND coalesce(p.end_time, p.start_time + {PACK_SQL_WIDTH}) >= {lo}) u WHERE {rows_in})"
    )


def pack_columns_sql(rows: str, *, day: bool = False) -> str:
    """SELECT packing `rows` (a FROM item with the `api_timings` columns) per half hour (per
    day with `day`: a day pack with slots), method, endpoint and status: the columns of an
    `api_timing_packs` row but packed_at (`PACK_NAMES`). Every array is ordered by every
    column, so they stay parallel (ties are identical rows)."""
    order = (
        "ORDER BY time, response_time_ms, user_type, database_query_time_ms, "
        "external_api_time_ms, cache_hit, request_id"
    )
    half_hour = f"date_bin({PACK_SQL_WIDTH}, time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    start = f"date_bin({DAY_PACK_SQL_WIDTH}, time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    slots = f"array_agg((extract(epoch FROM {half_hour} - {start}) / 1800)::int2 {order})"
    if not day:
        start, slots = half_hour, "NULL::int2[]"

    def optional(column: str) -> str:
        return f"CASE WHEN count({column}) > 0 THEN array_agg({column} {order}) END"

    return (
        f"SELECT {start} AS start_time, method, endpoint, status_code, count(*)::int4 AS count, "
        f"array_agg((extract(epoch FROM time - {half_hour}) * 1000000)::int4 {order}) AS offsets, "
        f"array_agg(response_time_ms {order}) AS durations, "
        f"{optional('user_type')} AS user_types, {optional('database_query_time_ms')} AS db_ms, "
        f"{optional('external_api_time_ms')} AS external_ms, "
        f"{optional('cache_hit')} AS cache_hits, {optional('request_id')} AS request_ids, "
        f"{slots} AS slots, max(time) AS end_time "
        f"FROM {rows} GROUP BY 1, 2, 3, 4"
    )
