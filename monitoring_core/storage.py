"""What the stored history weighs: bytes per sample per table, size per storage tier,
compaction lag, and the size a year would take at the current ingest rate.

Read by the Health page's Storage section (`ui/storage_section.py`) and `/metrics`
(`prometheus_lines`). Everything is measured from the catalog and a few index-driven
queries, never a table scan of raw rows:
- sizes: `pg_total_relation_size` (heap, TOAST, indexes, maps; partitions summed);
- samples: stored counts for chunks and packs (`sum(count)`), the statistics' row counts
  (`pg_class.reltuples`, from autovacuum's ANALYZE) for row tables and rollups;
- ingest rate: the last complete hour of the 1-minute rollups (`sum(count)`), per second;
- compaction lag: how old the newest compacted point is (`metric_chunks.end_time`, indexed)
  and the newest packed half hour of API timings;
- the year (`project_year`, pure): each tier at its retention setting (capped at a year)
  times the rate times the measured bytes per sample — rows for the day before compaction,
  chunks/packs after, and per series or endpoint the rollup rows each level keeps. A part
  whose bytes per sample cannot be measured yet (no chunk written yet) is named in
  `unmeasured` and left out of the total rather than guessed.
"""

# SQL here is assembled from this module's own table names; values are bound parameters.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from monitoring_core.retention import retention_days

__all__ = [
    "TIERS",
    "StorageFigures",
    "TableFigure",
    "project_year",
    "prometheus_lines",
    "storage_figures",
]

# tier -> (table, what one "sample" is)
TIERS: dict[str, tuple[tuple[str, str], ...]] = {
    "raw rows": (("metric_points", "point"), ("api_timings", "request"), ("web_vitals", "row")),
    "chunks and packs": (("metric_chunks", "point"), ("api_timing_packs", "request")),
    "1-minute rollups": (
        ("metric_rollup_1m", "row"),
        ("api_rollup_1m", "row"),
        ("api_total_1m", "row"),
    ),
    "hourly rollups": (
        ("metric_rollup_1h", "row"),
        ("api_rollup_1h", "row"),
        ("api_total_1h", "row"),
        ("web_vitals_rollup_1h", "row"),
    ),
    "6-hourly rollups": (
        ("metric_rollup_6h", "row"),
        ("api_rollup_6h", "row"),
        ("api_total_6h", "row"),
    ),
    "daily rollups": (
        ("metric_rollup_1d", "row"),
        ("api_rollup_1d", "row"),
        ("api_total_1d", "row"),
        ("web_vitals_rollup_1d", "row"),
    ),
}
_PACKED = {"metric_chunks", "api_timing_packs"}  # samples = sum(count)
YEAR_DAYS = 365


@dataclass(frozen=True)
class TableFigure:
    table: str
    tier: str
    unit: str  # point | request | row
    bytes: int
    samples: int

    @property
    def bytes_per_sample(self) -> float | None:
        return self.bytes / self.samples if self.samples else None


@dataclass
class StorageFigures:
    tables: list[TableFigure]
    metric_points_per_s: float  # the last complete hour, from the 1-minute rollups
    api_requests_per_s: float
    metric_series: int  # series with a point in that hour
    api_keys: int  # method + endpoint pairs with a request in that hour
    chunk_lag_s: float | None  # now - newest compacted point (None: nothing compacted yet)
    pack_lag_s: float | None  # now - end of the newest packed half hour of API timings
    year_bytes: int = 0
    unmeasured: list[str] = field(default_factory=list)

    def table(self, name: str) -> TableFigure:
        return next(t for t in self.tables if t.table == name)

    def tier_bytes(self) -> dict[str, int]:
        out = dict.fromkeys(TIERS, 0)
        for t in self.tables:
            out[t.tier] += t.bytes
        return out


# Per table (partitions summed): bytes, and rows as the planner's statistics count them
# (`reltuples`, kept by autovacuum's ANALYZE; the live-row counter where never analyzed).
_SIZES = """
WITH rel AS (
    SELECT t.name, c.oid AS relid FROM unnest(CAST(:names AS text[])) AS t(name)
    JOIN pg_class c ON c.oid = to_regclass(t.name)
    UNION ALL
    SELECT t.name, i.inhrelid FROM unnest(CAST(:names AS text[])) AS t(name)
    JOIN pg_inherits i ON i.inhparent = to_regclass(t.name)
)
SELECT rel.name, sum(pg_total_relation_size(rel.relid))::int8,
       sum(CASE WHEN c.relkind = 'p' THEN 0
                WHEN c.reltuples >= 0 THEN c.reltuples
                ELSE coalesce(s.n_live_tup, 0) END)::int8
FROM rel JOIN pg_class c ON c.oid = rel.relid
LEFT JOIN pg_stat_all_tables s ON s.relid = rel.relid
GROUP BY rel.name
"""


def storage_figures(conn: Connection, now: datetime) -> StorageFigures:
    """Every figure of the module docstring, measured now."""
    names = [table for tables in TIERS.values() for table, _ in tables]
    found = {
        name: (int(size), int(live))
        for name, size, live in conn.execute(text(_SIZES), {"names": names})
    }
    packed = {
        name: int(conn.execute(text(f"SELECT coalesce(sum(count), 0) FROM {name}")).scalar_one())
        for name in _PACKED
    }
    tables = [
        TableFigure(name, tier, unit, found[name][0], packed.get(name, found[name][1]))
        for tier, members in TIERS.items()
        for name, unit in members
        if name in found
    ]
    hi = now.replace(second=0, microsecond=0) - timedelta(minutes=5)  # rollups trail ingest
    window = {"lo": hi - timedelta(hours=1), "hi": hi}
    points, series = conn.execute(
        text(
            "SELECT coalesce(sum(count), 0), count(DISTINCT series_id) FROM metric_rollup_1m "
            "WHERE bucket >= :lo AND bucket < :hi"
        ),
        window,
    ).one()
    requests, keys = conn.execute(
        text(
            "SELECT coalesce(sum(count), 0), count(DISTINCT (method, endpoint)) "
            "FROM api_rollup_1m WHERE bucket >= :lo AND bucket < :hi"
        ),
        window,
    ).one()
    newest_chunk = conn.execute(text("SELECT max(end_time) FROM metric_chunks")).scalar()
    newest_pack = conn.execute(  # the end of the newest packed half hour (its last request)
        text(
            "SELECT max(coalesce(end_time, start_time + interval '30 minutes')) "
            "FROM api_timing_packs"
        )
    ).scalar()
    figures = StorageFigures(
        tables=tables,
        metric_points_per_s=int(points) / 3600.0,
        api_requests_per_s=int(requests) / 3600.0,
        metric_series=int(series),
        api_keys=int(keys),
        chunk_lag_s=(now - newest_chunk).total_seconds() if newest_chunk else None,
        pack_lag_s=((now - newest_pack).total_seconds() if newest_pack else None),
    )
    figures.year_bytes, figures.unmeasured = project_year(figures, retention_days(conn))
    return figures


def project_year(figures: StorageFigures, days: dict[str, int]) -> tuple[int, list[str]]:
    """Pure: bytes after a year at the figures' rates and bytes per sample, every tier kept
    as `days` (retention settings) says, capped at a year; and the parts left out because
    their bytes per sample is not measured yet."""
    unmeasured: list[str] = []

    def per(table: str) -> float:
        found = next((t for t in figures.tables if t.table == table), None)
        value = found.bytes_per_sample if found else None
        if value is None:
            unmeasured.append(table)
            return 0.0
        return value

    def kept(setting: str) -> float:
        return float(min(days[setting], YEAR_DAYS))

    total = 0.0
    day_s = 86_400.0
    if figures.metric_points_per_s:
        rate = figures.metric_points_per_s * day_s
        total += rate * per("metric_points")  # the day before compaction, as rows
        total += rate * max(kept("metric_chunks") - 1, 0) * per("metric_chunks")
    if figures.api_requests_per_s:
        rate = figures.api_requests_per_s * day_s
        total += rate * per("api_timings")
        total += rate * max(kept("api_timings") - 1, 0) * per("api_timing_packs")
    levels = (("1m", 1440, "rollup_1m"), ("1h", 24, "rollup_1h"), ("6h", 4, "rollup_6h"))
    for suffix, per_day, setting in (*levels, ("1d", 1, "rollup_1d")):
        if figures.metric_series:
            total += (
                figures.metric_series * per_day * kept(setting) * per(f"metric_rollup_{suffix}")
            )
        if figures.api_keys:
            rows = per_day * kept(setting)
            total += rows * (figures.api_keys * per(f"api_rollup_{suffix}"))
            total += rows * per(f"api_total_{suffix}")
    return round(total), sorted(set(unmeasured))


def prometheus_lines(figures: StorageFigures) -> str:
    """The figures in Prometheus text format (exposition 0.0.4)."""
    lines = [
        "# HELP monitoring_storage_bytes Bytes on disk per table (heap, TOAST, indexes).",
        "# TYPE monitoring_storage_bytes gauge",
    ]
    lines += [
        f'monitoring_storage_bytes{{table="{t.table}",tier="{t.tier}"}} {t.bytes}'
        for t in figures.tables
    ]
    lines += [
        "# HELP monitoring_storage_bytes_per_sample Bytes per stored point, request or row.",
        "# TYPE monitoring_storage_bytes_per_sample gauge",
    ]
    lines += [
        f'monitoring_storage_bytes_per_sample{{table="{t.table}",unit="{t.unit}"}} '
        f"{t.bytes_per_sample:.4f}"
        for t in figures.tables
        if t.bytes_per_sample is not None
    ]
    lines += [
        "# HELP monitoring_storage_tier_bytes Bytes on disk per storage tier.",
        "# TYPE monitoring_storage_tier_bytes gauge",
    ]
    lines += [
        f'monitoring_storage_tier_bytes{{tier="{tier}"}} {size}'
        for tier, size in figures.tier_bytes().items()
    ]
    lines += [
        "# HELP monitoring_storage_compaction_lag_seconds Age of the newest compacted point "
        "(metric_chunks) and of the newest packed API timing (api_timing_packs).",
        "# TYPE monitoring_storage_compaction_lag_seconds gauge",
    ]
    for form, lag in (
        ("metric_chunks", figures.chunk_lag_s),
        ("api_timing_packs", figures.pack_lag_s),
    ):
        if lag is not None:
            lines.append(f'monitoring_storage_compaction_lag_seconds{{form="{form}"}} {lag:.0f}')
    lines += [
        "# HELP monitoring_storage_ingest_per_second Samples stored per second over the last "
        "complete hour.",
        "# TYPE monitoring_storage_ingest_per_second gauge",
        f'monitoring_storage_ingest_per_second{{kind="metric_points"}} '
        f"{figures.metric_points_per_s:.3f}",
        f'monitoring_storage_ingest_per_second{{kind="api_timings"}} '
        f"{figures.api_requests_per_s:.3f}",
        "# HELP monitoring_storage_projected_year_bytes Bytes a year of history would take at "
        "the current ingest rate and measured bytes per sample (parts not measured yet left out).",
        "# TYPE monitoring_storage_projected_year_bytes gauge",
        f"monitoring_storage_projected_year_bytes {figures.year_bytes}",
    ]
    return "\n".join(lines) + "\n"
