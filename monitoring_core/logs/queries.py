"""Reads for the Logs page: search with filters, matches over time, volume per service.

A body substring (`contains`) is matched case-insensitively (`lower`): when it has an ASCII
trigram the GIN index over the blocks' codes (`logs.trigrams`) picks the blocks that can hold
it, and only their rows are read and checked; a shorter needle reads the window's rows. Each
row is first checked for the needle's longest run of characters that no case folding changes
(`verbatim_run`, e.g. ` 4242 ` of `vendor 4242 processed`) by a plain `strpos` (~0.1 µs),
and only the rows holding it by `strpos(lower(body), …)`: `lower()` converts every character
of the body (~2 µs under the C.UTF-8 locale) and was most of a rare needle's time. A trace id
is looked for the same way: its code (`trace_code`) is among its records' block's codes, and
only those blocks' rows are read (there is no per-record trace id index, migration 0032).
"""

# _FILTERS is a constant of this module; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

from monitoring_core.logs.trigrams import needle_trigrams, trace_code, verbatim_run

__all__ = [
    "PROBE_BLOCKS",
    "SEVERITIES",
    "candidate_blocks",
    "daily_volume",
    "list_log_services",
    "log_histogram",
    "search_logs",
]

# Lowest severity number of each OTLP range, for "this severity and above" filters.
SEVERITIES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}

_FILTERS = """
    time >= :s AND time < :e
    AND (CAST(:svc AS text) IS NULL OR service = :svc)
    AND severity_number >= :sev
    AND (CAST(:pat AS text) IS NULL OR (strpos(body, CAST(:run AS text)) > 0
         AND strpos(lower(body), lower(CAST(:pat AS text))) > 0))
    AND (CAST(:tid AS text) IS NULL OR trace_id = :tid)
    AND (CAST(:attr AS jsonb) IS NULL OR attributes @> CAST(:attr AS jsonb))
"""
# The blocks that can hold the needle, newest first: their earliest row carries the codes (GIN
# index) and the block's latest time; blocks are per UTC day, so that row is at most a day
# before :s.
_CANDIDATES = text(
    """
    SELECT block, time, block_end FROM log_records
    WHERE block_trgm @> CAST(:q AS int4[])
      AND time >= CAST(:s AS timestamptz) - interval '1 day' AND time < :e
      AND coalesce(block_end, time) >= :s
      AND (CAST(:svc AS text) IS NULL OR service = :svc)
    """
)
# A search first looks at the newest blocks of its window (at least PROBE_BLOCKS of them, or
# all: blocks ending in the last PROBE_SPAN, doubled until there are enough; a range on the
# partial index over block_end, migration 0030) and checks their codes: when at least a
# quarter hold the needle (a common one), those are its first candidates and older ones are
# asked of the GIN index only if they are still needed; the GIN index alone returns every
# matching block of the window, each a scattered heap row (16,400 for `worker 7 ` over 10 M
# records in 24 h). No ORDER BY … LIMIT here: with ~1 summary row in 512 the planner's
# estimates for it are far off, and it sorted every block instead of walking the index.
PROBE_BLOCKS = 256
PROBE_SPAN = timedelta(minutes=15)
_NEWEST = text(
    """
    SELECT block, time, block_end, block_trgm @> CAST(:q AS int4[]) AS hit FROM log_records
    WHERE block_end IS NOT NULL AND block_end >= :since
      AND time >= CAST(:s AS timestamptz) - interval '1 day' AND time < :e AND block_end >= :s
      AND (CAST(:svc AS text) IS NULL OR service = :svc)
    """
)
_OLDER = text(
    """
    SELECT block, time, block_end FROM log_records
    WHERE block_trgm @> CAST(:q AS int4[])
      AND time >= CAST(:s AS timestamptz) - interval '1 day' AND time < :e
      AND coalesce(block_end, time) >= :s AND coalesce(block_end, time) < :since
      AND (CAST(:svc AS text) IS NULL OR service = :svc)
    """
)
# (`coalesce(block_end, time)` in the GIN queries keeps the planner off the block_end index:
# a strict expression of block_end would imply its predicate (`block_end IS NOT NULL`,
# migration 0031; 0030's `block_trgm IS NOT NULL` was implied by `@>` itself), and with its
# estimates for the summary rows far too low it walked every block of the window detoasting
# and checking codes, 3.9 s at 10 M records, instead of asking the GIN index: 0.3 s.)
# Rows of some candidate blocks: `:lo`/`:hi` (their time span) prune partitions.
_IN_BLOCKS = """
    AND block = ANY(CAST(:blocks AS bigint[])) AND time >= :lo AND time <= :hi
"""
_FIRST_BATCH = 32  # blocks read at once by search_logs, doubling while more are needed


def candidate_blocks(
    conn: Connection, needle: str, *, start: datetime, end: datetime
) -> list[int] | None:
    """Ids of the blocks that can hold `needle` between `start` and `end` (the alert signal's
    read); None when the needle has no code (every record must be checked)."""
    params = {"q": needle_trigrams(needle), "s": start, "e": end, "svc": None}
    blocks = _candidates(conn, params)
    return None if blocks is None else [b.block for b in blocks]


def _newest_first(rows: Any) -> list[Any]:
    """Blocks sorted here, not by ORDER BY: given one, the planner walked the block_end index
    checking every block's codes (2 s at 10 M records) instead of asking the GIN index."""
    return sorted(rows, key=lambda b: b.block_end, reverse=True)


def _candidates(conn: Connection, params: dict[str, Any]) -> list[Any] | None:
    """Candidate blocks (block, first time, last time) newest first; None: no index use."""
    if not params["q"]:
        return None
    return _newest_first(conn.execute(_CANDIDATES, params))


def _search_candidates(
    conn: Connection, params: dict[str, Any]
) -> tuple[list[Any] | None, Callable[[], list[Any]] | None]:
    """(candidate blocks newest first, or None without codes; a reader of the older ones
    when the first list holds only the newest blocks' hits)."""
    if not params["q"]:
        return None, None
    start, end = params["s"], params["e"]
    since = max(start, end - PROBE_SPAN)
    while True:
        probe = list(conn.execute(_NEWEST, {**params, "since": since}))
        if len(probe) >= PROBE_BLOCKS or since <= start:
            break
        since = max(start, end - 2 * (end - since))
    probe.sort(key=lambda b: b.block_end, reverse=True)
    hits = [block for block in probe if block.hit]
    if since <= start:  # every block of the window was looked at
        return hits, None
    if len(hits) * 4 < len(probe):  # a rare needle: the GIN index finds its few blocks
        return _newest_first(conn.execute(_CANDIDATES, params)), None
    older = {**params, "since": since}
    return hits, lambda: _newest_first(conn.execute(_OLDER, older))


def _params(
    start: datetime,
    end: datetime,
    service: str | None,
    min_severity: int,
    contains: str | None,
    trace_id: str | None,
    attribute: tuple[str, Any] | None,
) -> dict[str, Any]:
    return {
        "s": start,
        "e": end,
        "svc": service,
        "sev": min_severity,
        "pat": contains or None,
        # a trace id's code narrows the blocks too (no per-record trace index, 0032)
        "q": (needle_trigrams(contains) if contains else [])
        + ([trace_code(trace_id)] if trace_id else []),
        "run": verbatim_run(contains) if contains else "",
        "tid": trace_id,
        "attr": orjson.dumps({attribute[0]: attribute[1]}).decode() if attribute else None,
    }


def _per_severity(select: str, min_severity: int) -> str:
    """The newest rows of one service as one ordered arm per severity number (a backward
    walk of the (service, severity_number, time) index, at most :limit rows each), merged:
    `severity_number >= :sev ORDER BY time` in one scan had to fetch and sort every match of
    the window (400,000 rows of 10 M in 24 h for ERROR and above)."""
    arms = " UNION ALL ".join(
        f"({select}{_FILTERS} AND severity_number = {number} ORDER BY time DESC LIMIT :limit)"
        for number in range(max(0, min(min_severity, 24)), 25)
    )
    return f"SELECT * FROM ({arms}) arms ORDER BY time DESC LIMIT :limit"


def search_logs(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    service: str | None = None,
    min_severity: int = 0,
    contains: str | None = None,
    trace_id: str | None = None,
    attribute: tuple[str, Any] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Matching records, newest first (at most `limit`). With a needle that has codes, the
    candidate blocks are read newest first in growing batches until `limit` rows are found
    and no block left can hold a newer one."""
    params = _params(start, end, service, min_severity, contains, trace_id, attribute)
    select = (
        "SELECT time, service, severity_number, severity_text, body, trace_id, span_id,"
        " attributes FROM log_records WHERE "
    )
    blocks, more = _search_candidates(conn, params)
    if blocks is None:
        sql = f"{select}{_FILTERS} ORDER BY time DESC LIMIT :limit"
        if service is not None and not contains:
            sql = _per_severity(select, min_severity)
        rows = conn.execute(text(sql), {**params, "limit": limit})
        return [dict(row._mapping) for row in rows]
    query = text(f"{select}{_FILTERS}{_IN_BLOCKS} ORDER BY time DESC LIMIT :limit")
    found: list[dict[str, Any]] = []
    size, i, matched = _FIRST_BATCH, 0, 0
    while True:
        if i >= len(blocks) and more is not None:  # the newest blocks' hits are used up
            blocks, more = blocks + more(), None
        if i >= len(blocks):
            break
        if len(found) >= limit and blocks[i].block_end < found[limit - 1]["time"]:
            break  # every block left ends before the limit-th newest match
        batch = blocks[i : i + size]
        bound = {
            "blocks": [b.block for b in batch],
            "lo": min(b.time for b in batch),
            "hi": max(b.block_end for b in batch),
        }
        got = [
            dict(row._mapping) for row in conn.execute(query, {**params, **bound, "limit": limit})
        ]
        matched += len(got)
        found += got
        found.sort(key=lambda r: r["time"], reverse=True)
        del found[limit:]
        i += len(batch)
        size = _next_batch(size, limit - len(found), matched / i)
    return found


def _next_batch(size: int, missing: int, per_block: float) -> int:
    """Blocks to read next: twice as many as last time, or fewer when the matches per block
    so far say fewer will do (a rare needle at 10 M records: its 500th match is ~500 blocks
    in, and doubling read 992 blocks for it)."""
    if missing <= 0:
        return _FIRST_BATCH
    wanted = int(missing / max(per_block, 1e-3) * 1.25) + 1
    return max(_FIRST_BATCH, min(size * 2, wanted))


def log_histogram(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    service: str | None = None,
    min_severity: int = 0,
    contains: str | None = None,
    trace_id: str | None = None,
    attribute: tuple[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Matching records per time bucket and severity range (INFO, WARN, ERROR …)."""
    params = _params(start, end, service, min_severity, contains, trace_id, attribute)
    where = _FILTERS
    blocks = _candidates(conn, params)
    if blocks is not None:
        if not blocks:
            return []
        where += _IN_BLOCKS
        params |= {
            "blocks": [b.block for b in blocks],
            "lo": min(b.time for b in blocks),
            "hi": max(b.block_end for b in blocks),
        }
    rows = conn.execute(
        text(
            "SELECT date_bin(:step, time, :s) AS bucket,"
            " CASE WHEN severity_number >= 21 THEN 'FATAL' WHEN severity_number >= 17 THEN 'ERROR'"
            " WHEN severity_number >= 13 THEN 'WARN' WHEN severity_number >= 9 THEN 'INFO'"
            " WHEN severity_number >= 5 THEN 'DEBUG' ELSE 'TRACE' END AS severity,"
            f" count(*) AS count FROM log_records WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {**params, "step": interval},
    )
    return [dict(row._mapping) for row in rows]


def list_log_services(conn: Connection, *, start: datetime, end: datetime) -> list[str]:
    rows = conn.execute(
        text("SELECT DISTINCT service FROM log_records WHERE time >= :s AND time < :e ORDER BY 1"),
        {"s": start, "e": end},
    )
    return [row[0] for row in rows]


def daily_volume(conn: Connection, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Records stored, body bytes and records refused over the daily cap, per service and
    UTC day (`log_volume`, kept by every write), newest day first."""
    rows = conn.execute(
        text(
            "SELECT day, service, records, body_bytes, refused FROM log_volume"
            " WHERE day >= CAST(:s AS date) AND day <= CAST(:e AS date)"
            " ORDER BY day DESC, records DESC, service"
        ),
        {"s": start.astimezone(UTC), "e": end.astimezone(UTC)},
    )
    return [dict(row._mapping) for row in rows]
