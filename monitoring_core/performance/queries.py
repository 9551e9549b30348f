"""Read functions behind the Overview and Performance pages and the Read API.

Everything comes from the rollups (`api_rollup_1m/1h`, `web_vitals_rollup_1h`); see
`rollup_read` for which table covers which part of a range. "Errors" are responses with a
status >= 500 (client errors 4xx are counted separately and do not make a service unhealthy).
Latencies are milliseconds; percentiles are within 1 % of exact (log-bucket histograms).

Overall status rule (`health_status`), checked in this order on the range's totals:
- `unknown`  no requests in the range (no data is its own outcome, never "healthy");
- `critical` error rate >= 5 % or p95 >= 2000 ms (the 2 s reference line on the Overview);
- `degraded` error rate >= 1 % or p95 >= 1000 ms;
- `healthy`  otherwise.
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitoring_core.metrics_query import parse_interval
from monitoring_core.performance.vitals_read import web_vitals_summary
from monitoring_core.rollup_read import (
    HOUR,
    RangeSource,
    floor_to,
    percentile_frame,
    range_source,
)
from monitoring_core.timerange import TimeRange

__all__ = [
    "CRITICAL_ERROR_RATE",
    "CRITICAL_P95_MS",
    "DEGRADED_ERROR_RATE",
    "DEGRADED_P95_MS",
    "endpoint_latency_trend",
    "endpoint_table",
    "health_status",
    "latency_trend",
    "overview_summary",
    "regression_flags",
    "top_slow_endpoints",
    "web_vitals_summary",
]

CRITICAL_ERROR_RATE, CRITICAL_P95_MS = 0.05, 2000.0
DEGRADED_ERROR_RATE, DEGRADED_P95_MS = 0.01, 1000.0
_TOTAL_COLUMNS = "bucket, count, sum, error_count, client_error_count, hist_keys, hist_counts"
_API_COLUMNS = (
    "bucket, method, endpoint, count, sum, error_count, client_error_count, hist_keys, hist_counts"
)
_API_SUMS = {
    "requests": "count",
    "errors": "error_count",
    "client_errors": "client_error_count",
    "total_ms": "sum",
}
_TREND_COLUMNS = ["bucket", "requests", "errors", "error_rate", "p50", "p95", "p99"]
_ENDPOINT_COLUMNS = [
    "method",
    "endpoint",
    "requests",
    "rpm",
    "errors",
    "error_rate",
    "client_errors",
    "avg_ms",
    "p50",
    "p90",
    "p95",
    "p99",
]


def health_status(requests: int, error_rate: float | None, p95_ms: float | None) -> str:
    """healthy | degraded | critical | unknown, by the rule in the module docstring."""
    if not requests:
        return "unknown"
    rate, p95 = error_rate or 0.0, p95_ms or 0.0
    if rate >= CRITICAL_ERROR_RATE or p95 >= CRITICAL_P95_MS:
        return "critical"
    if rate >= DEGRADED_ERROR_RATE or p95 >= DEGRADED_P95_MS:
        return "degraded"
    return "healthy"


def _api_frame(
    conn: Connection,
    source: RangeSource,
    groups: Sequence[str],
    select: str = "*",
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
) -> pd.DataFrame:
    sql = f"SELECT {select} FROM ({source.sql}) r"
    frame = percentile_frame(conn, sql, source.params, groups, _API_SUMS, quantiles)
    if frame.empty:
        return frame
    requests = frame["requests"].astype(float)
    frame["error_rate"] = (frame["errors"] / requests.where(requests > 0)).fillna(0.0)
    frame["avg_ms"] = frame["total_ms"] / requests.where(requests > 0)
    return frame


def overview_summary(conn: Connection, tr: TimeRange) -> dict[str, Any]:
    """Totals for the range: requests, rpm, error rate, p50/p95/p99 (ms) and the status."""
    source = range_source("api_total", tr, columns=_TOTAL_COLUMNS)
    frame = _api_frame(conn, source, ["scope"], "'all'::text AS scope, *")
    row = frame.iloc[0].to_dict() if not frame.empty else {}
    requests = int(row.get("requests", 0) or 0)
    minutes = max(tr.duration.total_seconds() / 60.0, 1e-9)
    summary: dict[str, Any] = {
        "requests": requests,
        "requests_per_min": requests / minutes,
        "errors": int(row.get("errors", 0) or 0),
        "client_errors": int(row.get("client_errors", 0) or 0),
        "error_rate": float(row.get("error_rate", 0.0) or 0.0),
        "avg_ms": _num(row.get("avg_ms")),
        "p50_ms": _num(row.get("p50")),
        "p95_ms": _num(row.get("p95")),
        "p99_ms": _num(row.get("p99")),
    }
    summary["status"] = health_status(requests, summary["error_rate"], summary["p95_ms"])
    return summary


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _step(interval: timedelta | str) -> timedelta:
    step = parse_interval(interval)
    if step < timedelta(minutes=1) or step % timedelta(minutes=1):
        raise ValueError("interval must be a whole number of minutes, at least 1m")
    return step


def _binned(
    interval: timedelta | str, tr: TimeRange, family: str, columns: str, where: str = ""
) -> RangeSource:
    step = _step(interval)
    source = range_source(family, tr, columns=columns, where=where, step=step)
    return RangeSource(
        source.sql, {**source.params, "step": step, "origin": floor_to(tr.start, step)}
    )


def latency_trend(conn: Connection, tr: TimeRange, interval: timedelta | str) -> pd.DataFrame:
    """One row per interval: bucket, requests, errors, error_rate, p50, p95, p99 (ms)."""
    source = _binned(interval, tr, "api_total", _TOTAL_COLUMNS)
    select = "date_bin(:step, bucket, :origin) AS tbin, count, sum, error_count, " + (
        "client_error_count, hist_keys, hist_counts"
    )
    frame = _api_frame(conn, source, ["tbin"], select)
    if frame.empty:
        return pd.DataFrame(columns=_TREND_COLUMNS)
    return frame.rename(columns={"tbin": "bucket"})[_TREND_COLUMNS]


def endpoint_table(conn: Connection, tr: TimeRange) -> pd.DataFrame:
    """Per method and endpoint: requests, rpm, error rate, avg and p50/p90/p95/p99 (ms)."""
    source = range_source("api", tr, columns=_API_COLUMNS)
    frame = _api_frame(conn, source, ["method", "endpoint"], quantiles=(0.5, 0.9, 0.95, 0.99))
    if frame.empty:
        return pd.DataFrame(columns=_ENDPOINT_COLUMNS)
    frame["rpm"] = frame["requests"] / max(tr.duration.total_seconds() / 60.0, 1e-9)
    frame = frame.sort_values(["requests", "endpoint"], ascending=[False, True])
    return frame[_ENDPOINT_COLUMNS].reset_index(drop=True)


def top_slow_endpoints(
    conn: Connection, tr: TimeRange, limit: int = 10, *, min_requests: int = 10
) -> pd.DataFrame:
    """The `limit` endpoints with the highest p95 among those with >= min_requests requests."""
    table = endpoint_table(conn, tr)
    table = table[table["requests"] >= min_requests]
    return (
        table.sort_values(["p95", "endpoint"], ascending=[False, True])
        .head(limit)
        .reset_index(drop=True)
    )


def endpoint_latency_trend(
    conn: Connection,
    tr: TimeRange,
    endpoints: Sequence[str] | None,
    interval: timedelta | str,
) -> pd.DataFrame:
    """Per interval and endpoint (all methods merged): requests, errors, error_rate, p50/p95/p99.

    `endpoints=None` means every endpoint.
    """
    where = "endpoint = ANY(:endpoints)" if endpoints is not None else ""
    source = _binned(interval, tr, "api", _API_COLUMNS, where)
    source = RangeSource(source.sql, {**source.params, "endpoints": list(endpoints or [])})
    select = "date_bin(:step, bucket, :origin) AS tbin, endpoint, count, sum, error_count, " + (
        "client_error_count, hist_keys, hist_counts"
    )
    frame = _api_frame(conn, source, ["tbin", "endpoint"], select)
    columns = ["bucket", "endpoint", *_TREND_COLUMNS[1:]]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame.rename(columns={"tbin": "bucket"})[columns]


def regression_flags(
    conn: Connection,
    now: datetime,
    weeks: int = 4,
    *,
    threshold: float = 1.5,
    min_requests: int = 20,
) -> pd.DataFrame:
    """Endpoints whose p95 over the last hour is worse than the same hour of past weeks.

    Baseline: the histograms of the same clock hour [now - k weeks - 1 h, now - k weeks) for
    k = 1..weeks, merged (so a busy week weighs more than a quiet one), from 1-minute rollups.
    `regressed` when both sides have >= min_requests requests and p95 / baseline >= threshold.
    """
    windows = [
        (now - timedelta(weeks=k) - HOUR, now - timedelta(weeks=k)) for k in range(weeks + 1)
    ]
    params: dict[str, Any] = {}
    parts = []
    for k, (lo, hi) in enumerate(windows):
        params[f"lo{k}"], params[f"hi{k}"] = lo, hi
        period = "current" if k == 0 else "baseline"
        parts.append(
            f"SELECT method, endpoint, '{period}' AS period, count, sum, error_count, "
            f"client_error_count, hist_keys, hist_counts FROM api_rollup_1m "
            f"WHERE bucket >= :lo{k} AND bucket < :hi{k}"
        )
    source = " UNION ALL ".join(parts)
    groups = ["method", "endpoint", "period"]
    rows = percentile_frame(conn, source, params, groups, _API_SUMS, (0.95,))
    return _regressions(rows, threshold, min_requests)


def _regressions(rows: pd.DataFrame, threshold: float, min_requests: int) -> pd.DataFrame:
    columns = [
        "method",
        "endpoint",
        "p95_last_hour",
        "baseline_p95",
        "ratio",
        "regressed",
        "requests_last_hour",
        "baseline_requests",
    ]
    if rows.empty or "current" not in set(rows["period"]):
        return pd.DataFrame(columns=columns)
    keys = ["method", "endpoint"]
    cur = rows[rows["period"] == "current"].set_index(keys)
    base = rows[rows["period"] == "baseline"].set_index(keys)
    out = pd.DataFrame(
        {
            "p95_last_hour": cur["p95"],
            "requests_last_hour": cur["requests"],
            "baseline_p95": base["p95"].reindex(cur.index),
            "baseline_requests": base["requests"].reindex(cur.index).fillna(0).astype(int),
        }
    )
    out["ratio"] = out["p95_last_hour"] / out["baseline_p95"]
    enough = (out["requests_last_hour"] >= min_requests) & (
        out["baseline_requests"] >= min_requests
    )
    out["regressed"] = enough & (out["ratio"] >= threshold)
    out = out.reset_index().sort_values(["regressed", "ratio"], ascending=[False, False])
    return out[columns].reset_index(drop=True)
