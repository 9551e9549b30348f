"""Incremental rollups, all in SQL: raw points -> 1-minute, 1-hour and 1-day rows with histograms.

Tables: metric_rollup_1m/1h/1d (per series), api_rollup_1m/1h/1d (per method and endpoint),
api_total_1m/1h/1d (all endpoints merged, for the Overview), web_vitals_rollup_1h/1d (per
metric, page and device). Each row: count, sum, min, max, a log-bucket histogram
(`histogram.py`) and the family's extras (last value; 5xx and 4xx counts; rating counts).

How a run works, per family (metric points, API timings, Web Vitals):
1. `hi` = now - safety lag, lowered further to the start of the oldest other open transaction
   (see `_safe_upper`); the watermark `lo` is the previous run's `hi` (table
   `rollup_watermarks`, compared with the raw rows' `ingested_at`).
2. The buckets touched by rows ingested in (lo, hi] are listed — late points touch old
   buckets, which is the point.
3. Those buckets are **recomputed from raw** (not merged into the old rows): nearby touched
   minutes are grouped into ranges and each range is aggregated from the raw table with
   `INSERT … SELECT … ON CONFLICT DO UPDATE`. Recomputing makes a run idempotent (re-running a
   window, or resetting a watermark, gives the same rows), keeps `last` exact, and needs no
   array-merge in an upsert; its cost is re-reading the other points of a touched minute,
   which is small because live points touch only the newest minutes.
   Metric points and API timings go into their 1-minute rows one histogram entry per point
   (sorted keys, possibly repeated, and an **empty `hist_counts`, meaning a count of 1 per
   key**: the array of ones cost ~40 of the row's ~230 bytes); rows with more than
   DEDUP_OVER entries are then merged per key (real counts), so the common
   few-points-a-minute rows skip a costly GROUP BY and busy series or endpoints still get
   compact rows (`one_entry_per_point`). Every reader unnests `(hist_keys, hist_counts)`,
   which pads the empty counts with NULL, and takes `coalesce(count, 1)`: merges stay exact.
4. Then the family's merge stages (`Family.stages`), each recomputing its touched buckets
   from the level below by merging histograms: all-endpoint minutes from endpoint minutes,
   hours from minutes (at most 60 rows per series instead of an hour of raw points), days
   from hours. Web Vitals start at the hour (raw -> hour -> day).
5. The watermark moves to `hi` in the same transaction, so a crash repeats the window instead
   of losing it.
6. No stored row can stop the job: each range runs in a savepoint, and a range failing with a
   data error (a float8 sum overflowing on huge stored values, …) is split in halves down to
   single buckets; the failing buckets are recorded in `rollup_quarantine`, logged, counted in
   the run's summary and skipped, and the watermark moves on. The happy path pays one
   SAVEPOINT/RELEASE per range, nothing per row.

Why the lag: `ingested_at` defaults to the ingest transaction's start time, and a row becomes
visible only at commit. A transaction that started before `hi` but commits after this run would
carry rows below the new watermark that this run did not see. Ingest transactions last well
under a second; `SAFETY_LAG` (15 s) covers them, and `_safe_upper` also holds `hi` below any
transaction still open (bounded by `MAX_HOLD`, so one stuck session cannot stall rollups).
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DataError

from monitoring_core.chunks.store import expand_touched
from monitoring_core.chunks.timings import source_sql as timings_source
from monitoring_core.histogram import sql_bucket_key

__all__ = [
    "FAMILIES",
    "UNITS",
    "MAX_HOLD",
    "SAFETY_LAG",
    "Family",
    "Stage",
    "RollupReport",
    "contiguous_ranges",
    "quarantine_count",
    "quarantined_ranges",
    "roll_family",
    "rollup_lock_key",
    "run_rollups",
    "vitals_hist_select",
]

log = logging.getLogger(__name__)

SAFETY_LAG = timedelta(seconds=15)
MAX_HOLD = timedelta(minutes=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
MAX_GAP = timedelta(minutes=5)  # touched minutes closer than this are recomputed as one range
MAX_CHUNK = timedelta(hours=12)  # bounds the memory of one aggregation statement
_LOCK_BASE = 7_210_100
DEDUP_OVER = 32  # see Family.one_entry_per_point


@dataclass(frozen=True)
class Stage:
    """One merge step: rows of `source` re-binned per `unit`, keeping `keys`, into `target`."""

    source: str
    target: str
    unit: str  # minute | hour | day
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Family:
    """One raw table and its rollups; every string is trusted SQL from this module."""

    name: str
    raw: str
    keys: tuple[str, ...]
    point_extra: str  # per-(bucket, keys, hist key) aggregates over raw rows `v` / columns
    outer_extra: str  # the same aggregated over those groups, with output names
    merge_extra: str  # for the merge stages: aggregates over rollup rows, with output names
    extra_cols: tuple[str, ...]
    point_cols: str  # raw columns the point_extra aggregates read
    first_table: str  # the rollup computed from raw
    first_unit: str  # its bucket width
    stages: tuple[Stage, ...]  # then these, in order, each from rollup rows
    # One histogram entry per point (count 1, keys sorted but possibly repeated) for the raw ->
    # first level step, then rows with more than DEDUP_OVER entries are merged per key. Gauges
    # sampled every few seconds have a handful of points a minute: skipping the per-key
    # GROUP BY made that step 3-4x faster (0.2 s vs 0.7-1.0 s per 12 h of 40 series).
    one_entry_per_point: bool = False
    per_point_extra: str = ""  # the extras aggregated straight over points, for that mode


_API_KEYS = ("method", "endpoint")
FAMILIES: tuple[Family, ...] = (
    Family(
        name="metric_points",
        raw="metric_points",
        keys=("series_id",),
        point_extra="max(ARRAY[date_part('epoch', time), v]) AS lastpair",
        outer_extra="(max(lastpair))[2] AS last",
        merge_extra="(max(ARRAY[date_part('epoch', bucket), last]))[2] AS last",
        extra_cols=("last",),
        point_cols="time",
        first_table="metric_rollup_1m",
        first_unit="minute",
        stages=(
            Stage("metric_rollup_1m", "metric_rollup_1h", "hour", ("series_id",)),
            Stage("metric_rollup_1h", "metric_rollup_6h", "6 hours", ("series_id",)),
            Stage("metric_rollup_1h", "metric_rollup_1d", "day", ("series_id",)),
        ),
        one_entry_per_point=True,
        per_point_extra="(max(ARRAY[date_part('epoch', time), v]))[2] AS last",
    ),
    Family(
        name="api_timings",
        raw="api_timings",
        keys=_API_KEYS,
        point_extra=(
            "count(*) FILTER (WHERE status_code >= 500) AS e, "
            "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS ce"
        ),
        outer_extra="sum(e)::bigint AS error_count, sum(ce)::bigint AS client_error_count",
        merge_extra=(
            "sum(error_count)::bigint AS error_count, "
            "sum(client_error_count)::bigint AS client_error_count"
        ),
        extra_cols=("error_count", "client_error_count"),
        point_cols="status_code",
        first_table="api_rollup_1m",
        first_unit="minute",
        stages=(
            Stage("api_rollup_1m", "api_total_1m", "minute", ()),
            Stage("api_rollup_1m", "api_rollup_1h", "hour", _API_KEYS),
            Stage("api_total_1m", "api_total_1h", "hour", ()),
            Stage("api_rollup_1h", "api_rollup_6h", "6 hours", _API_KEYS),
            Stage("api_total_1h", "api_total_6h", "6 hours", ()),
            Stage("api_rollup_1h", "api_rollup_1d", "day", _API_KEYS),
            Stage("api_total_1h", "api_total_1d", "day", ()),
        ),
        one_entry_per_point=True,
        per_point_extra=(
            "count(*) FILTER (WHERE status_code >= 500) AS error_count, "
            "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS client_error_count"
        ),
    ),
    Family(
        name="web_vitals",
        raw="web_vitals",
        keys=("name", "page_route", "device_type"),
        point_extra=(
            "count(*) FILTER (WHERE rating = 'good') AS g, "
            "count(*) FILTER (WHERE rating = 'needs-improvement') AS ni, "
            "count(*) FILTER (WHERE rating = 'poor') AS p"
        ),
        outer_extra=(
            "sum(g)::bigint AS good, sum(ni)::bigint AS needs_improvement, sum(p)::bigint AS poor"
        ),
        merge_extra=(
            "sum(good)::bigint AS good, sum(needs_improvement)::bigint AS needs_improvement, "
            "sum(poor)::bigint AS poor"
        ),
        extra_cols=("good", "needs_improvement", "poor"),
        point_cols="rating",
        first_table="web_vitals_rollup_1h",
        first_unit="hour",
        stages=(
            Stage(
                "web_vitals_rollup_1h",
                "web_vitals_rollup_1d",
                "day",
                ("name", "page_route", "device_type"),
            ),
        ),
    ),
)
UNITS = {"minute": MINUTE, "hour": HOUR, "6 hours": 6 * HOUR, "day": timedelta(days=1)}
# Longest range one statement recomputes, per target bucket width (bounds its memory).
_MAX_RANGE = {
    "minute": MAX_CHUNK, "hour": timedelta(days=2), "6 hours": timedelta(days=16),
    "day": timedelta(days=62),
}  # fmt: skip
_VALUE_COLUMN = {"metric_points": "value", "api_timings": "response_time_ms", "web_vitals": "value"}
_HIST_COLS = ("count", "sum", "min", "max", "hist_keys", "hist_counts")


def _bin(unit: str, column: str) -> str:
    """UTC minute/hour start of a timestamptz column. date_bin, not date_trunc(unit, t, 'UTC'):
    the time-zone form costs a zone lookup per row (measured 8x slower on 170 k points)."""
    width = unit if unit[0].isdigit() else f"1 {unit}"  # "minute" -> "1 minute"; "6 hours"
    return f"date_bin('{width}', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def _raw_in(fam: Family, lo: str, hi: str) -> str:
    """FROM item and filter: the family's raw rows with time in [lo, hi). API timings come
    from rows and packs both (chunks/timings.py: older ones are packed)."""
    if fam.raw == "api_timings":
        return f"{timings_source(lo, hi)} raw"
    return f"{fam.raw} WHERE time >= {lo} AND time < {hi}"


def hist_select(fam: Family, unit: str | None, lo: str, hi: str) -> str:
    """SQL aggregating raw rows with time in [lo, hi) per [bucket,] keys, in rollup shape.

    `unit` is 'minute', 'hour' or None (no bucket column); lo/hi are bound-parameter names.
    """
    keys = ", ".join(fam.keys)
    bucket = f"{_bin(unit, 'time')} AS bucket, " if unit else ""
    by = f"bucket, {keys}" if unit else keys
    value = _VALUE_COLUMN[fam.raw]
    return (
        f"SELECT {by}, sum(c)::bigint AS count, sum(s) AS sum, min(mn) AS min, max(mx) AS max, "
        "array_agg(k ORDER BY k) AS hist_keys, array_agg(c ORDER BY k) AS hist_counts, "
        f"{fam.outer_extra} FROM (SELECT {by}, k, count(*) AS c, sum(v) AS s, min(v) AS mn, "
        f"max(v) AS mx, {fam.point_extra} FROM (SELECT {bucket}{keys}, {value} AS v, "
        f"{sql_bucket_key(value)} AS k, {fam.point_cols} FROM {_raw_in(fam, lo, hi)}) pts "
        f"GROUP BY {by}, k) pk GROUP BY {by}"
    )


def _points_select(fam: Family, unit: str, lo: str, hi: str) -> str:
    """Like `hist_select` but one histogram entry per point (see `one_entry_per_point`)."""
    keys = ", ".join(fam.keys)
    value = _VALUE_COLUMN[fam.raw]
    return (
        f"SELECT bucket, {keys}, count(*) AS count, sum(v) AS sum, min(v) AS min, max(v) AS max, "
        "array_agg(k ORDER BY k) AS hist_keys, CAST('{}' AS bigint[]) AS hist_counts, "
        f"{fam.per_point_extra} "
        f"FROM (SELECT {_bin(unit, 'time')} AS bucket, {keys}, {value} AS v, "
        f"{sql_bucket_key(value)} AS k, {fam.point_cols} FROM {_raw_in(fam, lo, hi)}) pts "
        f"GROUP BY bucket, {keys}"
    )


def _dedup_sql(fam: Family) -> str:
    """Merge repeated keys of the first-level rows in [:lo, :hi) that have many entries."""
    keys = ", ".join(fam.keys)
    on = " AND ".join(f"r.{k} = n.{k}" for k in ("bucket", *fam.keys))
    return (
        f"UPDATE {fam.first_table} r SET hist_keys = n.ks, hist_counts = n.cs FROM "
        f"(SELECT bucket, {keys}, array_agg(k ORDER BY k) AS ks, array_agg(c ORDER BY k) AS cs "
        f"FROM (SELECT bucket, {keys}, u.k, sum(coalesce(u.c, 1))::bigint AS c "
        f"FROM {fam.first_table}, "
        "unnest(hist_keys, hist_counts) AS u(k, c) WHERE bucket >= :lo AND bucket < :hi "
        f"AND cardinality(hist_keys) > {DEDUP_OVER} GROUP BY bucket, {keys}, u.k) x "
        f"GROUP BY bucket, {keys}) n WHERE {on}"
    )


def _otlp_histograms_sql() -> str:
    """Recompute the 1-minute rows of the series with OTLP histogram rows in [:lo, :hi)
    (`metric_histograms`, written by otlp/histograms.py): their buckets merged with any raw
    points of the same series and minute. Runs after the points' upsert, so such a row ends
    up whole whichever ran last; `last` is the newest histogram's mean (or point's value)."""
    bucket = _bin("minute", "time")
    src = (
        f"SELECT {bucket} AS bucket, series_id, time, count, sum, min, max, hist_keys, "
        "hist_counts, sum / count AS lastv FROM metric_histograms "
        "WHERE time >= :lo AND time < :hi AND count > 0 "
        f"UNION ALL SELECT {bucket} AS bucket, series_id, time, 1, value, value, value, "
        f"ARRAY[{sql_bucket_key('value')}], CAST('{{1}}' AS bigint[]), value FROM metric_points "
        "WHERE time >= :lo AND time < :hi AND series_id IN (SELECT series_id FROM "
        "metric_histograms WHERE time >= :lo AND time < :hi)"
    )
    cols = "bucket, series_id, count, sum, min, max, hist_keys, hist_counts, last"
    return (
        f"WITH src AS MATERIALIZED ({src}) INSERT INTO metric_rollup_1m ({cols}) "
        f"SELECT {cols} FROM (SELECT bucket, series_id, sum(count)::bigint AS count, "
        "sum(sum) AS sum, min(min) AS min, max(max) AS max, "
        "(max(ARRAY[date_part('epoch', time), lastv]))[2] AS last FROM src "
        "GROUP BY bucket, series_id) t JOIN (SELECT bucket, series_id, "
        "array_agg(k ORDER BY k) AS hist_keys, array_agg(c ORDER BY k) AS hist_counts FROM "
        "(SELECT bucket, series_id, u.k, sum(u.c)::bigint AS c FROM src, "
        "unnest(src.hist_keys, src.hist_counts) AS u(k, c) GROUP BY bucket, series_id, u.k) x "
        "GROUP BY bucket, series_id) h USING (bucket, series_id) "
        "ON CONFLICT (bucket, series_id) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_HIST_COLS, "last"))
    )


def vitals_hist_select(unit: str | None, lo: str, hi: str) -> str:
    """Raw Web Vitals in [lo, hi) in the shape of `web_vitals_rollup_1h` (used for edges)."""
    fam = FAMILIES[2]
    cols = ", ".join(("name", "page_route", "device_type", *fam.extra_cols, *_HIST_COLS))
    return f"SELECT {cols} FROM ({hist_select(fam, unit, lo, hi)}) v"


def _merge_select(fam: Family, stage: Stage) -> str:
    """SQL re-binning `stage.source` rows with bucket in [:lo, :hi) per stage unit and keys."""
    by = ", ".join((*stage.keys, "hb"))
    src = (
        f"SELECT {_bin(stage.unit, 'bucket')} AS hb, * FROM {stage.source} "
        "WHERE bucket >= :lo AND bucket < :hi"
    )
    return (
        f"SELECT t.hb AS bucket, t.*, h.hist_keys, h.hist_counts FROM "
        f"(SELECT {by}, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, "
        f"max(max) AS max, {fam.merge_extra} FROM ({src}) s GROUP BY {by}) t "
        f"JOIN (SELECT {by}, array_agg(k ORDER BY k) AS hist_keys, "
        f"array_agg(c ORDER BY k) AS hist_counts FROM (SELECT {by}, u.k, "
        f"sum(coalesce(u.c, 1))::bigint AS c FROM ({src}) s, "
        "unnest(s.hist_keys, s.hist_counts) AS u(k, c) "
        f"GROUP BY {by}, u.k) x GROUP BY {by}) h USING ({by})"
    )


def _upsert(table: str, keys: tuple[str, ...], fam: Family, select_sql: str) -> str:
    names = ", ".join(("bucket", *keys, *_HIST_COLS, *fam.extra_cols))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_HIST_COLS, *fam.extra_cols))
    return (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM ({select_sql}) r "
        f"ON CONFLICT ({', '.join(('bucket', *keys))}) DO UPDATE SET {updates}"
    )


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if unit in ("hour", "6 hours", "day"):
        moment = moment.replace(minute=0)
    if unit == "6 hours":
        return moment.replace(hour=moment.hour - moment.hour % 6)
    return moment.replace(hour=0) if unit == "day" else moment


def contiguous_ranges(
    starts: Iterable[datetime], step: timedelta, max_gap: timedelta, max_len: timedelta
) -> list[tuple[datetime, datetime]]:
    """Bucket starts -> [lo, hi) ranges covering them, merging gaps up to max_gap, each <= max_len."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if ranges:
            lo, hi = ranges[-1]
            if start - hi <= max_gap and start + step - lo <= max_len:
                ranges[-1] = (lo, start + step)
                continue
        ranges.append((start, start + step))
    return ranges


@dataclass
class FamilyResult:
    name: str
    new_rows: int = 0
    ranges: int = 0
    seconds: float = 0.0
    quarantined: list[tuple[str, datetime, datetime]] = field(default_factory=list)


@dataclass
class RollupReport:
    families: list[FamilyResult] = field(default_factory=list)

    @property
    def quarantined(self) -> list[tuple[str, datetime, datetime]]:
        """(target table, range start, range end) of every bucket skipped this run."""
        return [q for f in self.families for q in f.quarantined]

    def summary(self) -> str:
        return "; ".join(
            f"{f.name}: {f.new_rows} new rows, {f.ranges} ranges recomputed in {f.seconds:.2f}s"
            + (
                f", {len(f.quarantined)} QUARANTINED (see rollup_quarantine)"
                if f.quarantined
                else ""
            )
            for f in self.families
        )


def run_rollups(
    engine: Engine, now: datetime, *, safety_lag: timedelta = SAFETY_LAG
) -> RollupReport:
    """Roll up every family, one transaction each. Loaders that just committed pass lag 0."""
    report = RollupReport()
    for fam in FAMILIES:
        with engine.begin() as conn:
            report.families.append(roll_family(conn, fam, now - safety_lag))
    return report


def _safe_upper(conn: Connection, hi: datetime) -> datetime:
    """`hi`, held below the start of the oldest other open transaction (at most MAX_HOLD)."""
    oldest = conn.execute(
        text(
            "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND xact_start IS NOT NULL"
        )
    ).scalar()
    if oldest is None or oldest >= hi:
        return hi
    return max(oldest - timedelta(microseconds=1), hi - MAX_HOLD)


def _watermark(conn: Connection, name: str) -> datetime:
    conn.execute(
        text(
            "INSERT INTO rollup_watermarks (name, watermark) VALUES (:n, :w) "
            "ON CONFLICT (name) DO NOTHING"
        ),
        {"n": name, "w": EPOCH},
    )
    return conn.execute(
        text("SELECT watermark FROM rollup_watermarks WHERE name = :n FOR UPDATE"), {"n": name}
    ).scalar_one()


def roll_family(conn: Connection, fam: Family, hi: datetime) -> FamilyResult:
    """Advance one family's rollups from its watermark to `hi` (see the module docstring)."""
    started, result = time.perf_counter(), FamilyResult(fam.name)
    # One roller per family at a time, whoever calls (worker, demo loader, tests).
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(fam.name)})
    conn.execute(text("SET LOCAL work_mem = '64MB'"))
    lo, hi = _watermark(conn, fam.name), _safe_upper(conn, hi)
    if hi <= lo:
        return result
    if fam.raw == "metric_points":  # late points into compacted stretches: chunks to rows
        expand_touched(conn, lo, hi)
    unit = fam.first_unit
    raw = fam.raw
    if fam.raw == "metric_points":  # OTLP histogram points roll up with the metric family
        raw = (
            "(SELECT time, ingested_at FROM metric_points UNION ALL "
            "SELECT time, ingested_at FROM metric_histograms) r"
        )
    touched = conn.execute(
        text(
            f"SELECT {_bin(unit, 'time')} AS b, count(*) AS n FROM {raw} "
            "WHERE ingested_at > :lo AND ingested_at <= :hi GROUP BY 1"
        ),
        {"lo": lo, "hi": hi},
    ).all()
    result.new_rows = sum(n for _, n in touched)
    starts = [b for b, _ in touched]
    select = (_points_select if fam.one_entry_per_point else hist_select)(fam, unit, ":lo", ":hi")
    first = text(_upsert(fam.first_table, fam.keys, fam, select))
    dedup = text(_dedup_sql(fam)) if fam.one_entry_per_point else None
    histograms = text(_otlp_histograms_sql()) if fam.raw == "metric_points" else None

    def first_level(params: dict[str, Any]) -> None:
        conn.execute(first, params)
        if dedup is not None:
            conn.execute(dedup, params)
        if histograms is not None:
            conn.execute(histograms, params)

    for r_lo, r_hi in contiguous_ranges(starts, UNITS[unit], MAX_GAP, _MAX_RANGE[unit]):
        _guarded(conn, fam.name, fam.first_table, first_level, r_lo, r_hi, UNITS[unit], result)
        result.ranges += 1
    for stage in fam.stages:
        buckets = {_floor(b, stage.unit) for b in starts}
        sql = text(_upsert(stage.target, stage.keys, fam, _merge_select(fam, stage)))
        step, longest = UNITS[stage.unit], _MAX_RANGE[stage.unit]
        for r_lo, r_hi in contiguous_ranges(buckets, step, timedelta(0), longest):
            _guarded(conn, fam.name, stage.target, _statement(conn, sql), r_lo, r_hi, step, result)
            result.ranges += 1
    conn.execute(
        text("UPDATE rollup_watermarks SET watermark = :w, updated_at = now() WHERE name = :n"),
        {"w": hi, "n": fam.name},
    )
    result.seconds = time.perf_counter() - started
    return result


def _statement(conn: Connection, sql: Any) -> Callable[[dict[str, Any]], None]:
    def run(params: dict[str, Any]) -> None:
        conn.execute(sql, params)

    return run


def _guarded(
    conn: Connection,
    family: str,
    table: str,
    run: Callable[[dict[str, Any]], None],
    lo: datetime,
    hi: datetime,
    step: timedelta,
    result: FamilyResult,
) -> None:
    """`run` over [lo, hi) in a savepoint; on a data error, halves until single buckets fail.

    Only data errors (SQLSTATE class 22: overflow, …) come from stored rows; anything else
    (the database going away) still fails the run, which then repeats the window.
    """
    try:
        with conn.begin_nested():
            run({"lo": lo, "hi": hi})
        return
    except DataError as exc:
        if hi - lo <= step:
            _quarantine(conn, family, table, lo, hi, exc)
            result.quarantined.append((table, lo, hi))
            return
    mid = lo + ((hi - lo) // step // 2) * step
    _guarded(conn, family, table, run, lo, mid, step, result)
    _guarded(conn, family, table, run, mid, hi, step, result)


_QUARANTINE = text(
    "INSERT INTO rollup_quarantine (family, target_table, range_start, range_end, error) "
    "VALUES (:f, :t, :lo, :hi, :e) ON CONFLICT (target_table, range_start, range_end) "
    "DO UPDATE SET error = EXCLUDED.error, attempts = rollup_quarantine.attempts + 1, "
    "last_seen = now()"
)


def _quarantine(
    conn: Connection, family: str, table: str, lo: datetime, hi: datetime, exc: DataError
) -> None:
    error = str(exc.orig).strip().splitlines()[0][:500] if exc.orig else str(exc)[:500]
    log.warning("rollup of %s [%s, %s) quarantined: %s", table, lo, hi, error)
    conn.execute(_QUARANTINE, {"f": family, "t": table, "lo": lo, "hi": hi, "e": error})


def quarantine_count(conn: Connection) -> int:
    """How many bucket ranges are quarantined (0 when the rollups are whole)."""
    return int(conn.execute(text("SELECT count(*) FROM rollup_quarantine")).scalar_one())


def quarantined_ranges(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Quarantined bucket ranges, most recently seen first (for the Health page and the API)."""
    rows = conn.execute(
        text(
            "SELECT family, target_table, range_start, range_end, error, attempts, first_seen, "
            "last_seen FROM rollup_quarantine ORDER BY last_seen DESC, id DESC LIMIT :n"
        ),
        {"n": limit},
    ).mappings()
    return [dict(row) for row in rows]


def _lock_key(name: str) -> int:
    return _LOCK_BASE + zlib.crc32(name.encode()) % 1000


def rollup_lock_key(name: str) -> int:
    """The advisory lock a family's rollup holds (compaction takes the metric family's)."""
    return _lock_key(name)
