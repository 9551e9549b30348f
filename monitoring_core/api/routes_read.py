"""Read API (scope read or admin): dashboards, metric queries, performance analytics, Web Vitals.

Thin: each route parses the time range and calls the same monitoring_core read functions the
pages use (performance.queries, performance.vitals_read, metrics_query), then turns their
DataFrames into JSON records. Handlers are sync so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from monitoring_core.api.deps import require_read
from monitoring_core.api.params import Text
from monitoring_core.flows.overall_health import read_overall_health
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.metrics_query import AGGREGATIONS, TooManySeries, query_metric
from monitoring_core.performance import queries
from monitoring_core.performance.vitals import VITAL_NAMES
from monitoring_core.timerange import TimeRange, parse_time_range, pick_interval

__all__ = ["router"]

router = APIRouter(tags=["read"], dependencies=[Depends(require_read)])
Preset = Annotated[str | None, Query(alias="timeRange", description="1h|24h|7d|30d|90d")]
From = Annotated[str | None, Query(alias="from", description="ISO 8601 start (with to)")]
To = Annotated[str | None, Query(alias="to", description="ISO 8601 end (with from)")]


def _range(preset: str | None, start: str | None, end: str | None, now: datetime) -> TimeRange:
    try:
        return parse_time_range(preset, now=now, start=start, end=end)
    except ValueError as exc:
        raise InvalidItems([ItemError(None, "timeRange", str(exc))]) from None


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts: NaN as null, times as ISO 8601."""
    if frame.empty:
        return []
    parsed: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records", date_format="iso"))
    return parsed


def _range_json(tr: TimeRange) -> dict[str, str]:
    return {"from": tr.start.isoformat(), "to": tr.end.isoformat()}


@router.get("/api/monitoring/dashboard/overview")
def dashboard_overview(
    request: Request, preset: Preset = "24h", start: From = None, end: To = None
) -> dict[str, Any]:
    """Overall status, request and error rates, p50/p95 trend and the slowest endpoints;
    `health`: the overall health of API timings, checks, alerts and incidents, with reasons."""
    tr = _range(preset, start, end, datetime.now(UTC))
    interval = pick_interval(tr)
    with request.app.state.read.connect() as conn:
        return {
            "timeRange": _range_json(tr),
            "interval_seconds": interval.total_seconds(),
            "summary": queries.overview_summary(conn, tr),
            "health": read_overall_health(conn, tr),
            "latency_trend": records(queries.latency_trend(conn, tr, interval)),
            "top_slow_endpoints": records(queries.top_slow_endpoints(conn, tr, 10)),
        }


@router.get("/api/monitoring/dashboard/performance")
def dashboard_performance(
    request: Request, preset: Preset = "24h", start: From = None, end: To = None
) -> dict[str, Any]:
    """Per-endpoint table, latency trend, Web Vitals per page and device, regression flags."""
    now = datetime.now(UTC)
    tr = _range(preset, start, end, now)
    interval = pick_interval(tr)
    with request.app.state.read.connect() as conn:
        return {
            "timeRange": _range_json(tr),
            "interval_seconds": interval.total_seconds(),
            "endpoints": records(queries.endpoint_table(conn, tr)),
            "latency_trend": records(queries.latency_trend(conn, tr, interval)),
            "web_vitals": records(
                queries.web_vitals_summary(conn, tr, ("name", "page_route", "device_type"))
            ),
            "regressions": records(queries.regression_flags(conn, now)),
        }


class MetricQuery(BaseModel):
    """Body of POST /api/monitoring/query/metrics."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    metric_name: Text = Field(min_length=1, max_length=200)
    aggregation: str = "avg"
    interval: str = "5m"
    time_range: str | None = Field(default=None, alias="timeRange")
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    group_by: list[Text] = Field(default_factory=list, max_length=5)
    filters: dict[Text, Text | int | float | bool] = Field(default_factory=dict)


@router.post("/api/monitoring/query/metrics")
def query_metrics(request: Request, body: MetricQuery) -> dict[str, Any]:
    """`{metric_name, aggregation, interval, timeRange, group_by?, filters?}` → series."""
    tr = _range(body.time_range, body.from_, body.to, datetime.now(UTC))
    if body.aggregation not in AGGREGATIONS:
        raise InvalidItems(
            [ItemError(None, "aggregation", f"must be one of {', '.join(AGGREGATIONS)}")]
        )
    # Ingest stores dimension values as strings, so a filter {"status": 500} means "500".
    filters = {k: _label(v) for k, v in body.filters.items()}
    with request.app.state.read.connect() as conn:
        try:
            frame = query_metric(
                conn,
                metric_name=body.metric_name,
                aggregation=body.aggregation,
                interval=body.interval,
                tr=tr,
                group_by=body.group_by,
                filters=filters,
                max_series=request.app.state.settings.max_query_series,
            )
        except TooManySeries as exc:
            raise InvalidItems([ItemError(None, "group_by", str(exc))]) from None
        except ValueError as exc:
            raise InvalidItems([ItemError(None, "interval", str(exc))]) from None
    return {
        "metric_name": body.metric_name,
        "aggregation": body.aggregation,
        "interval": body.interval,
        "timeRange": _range_json(tr),
        "series": _series(frame, body.group_by),
    }


def _label(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _series(frame: pd.DataFrame, group_by: list[str]) -> list[dict[str, Any]]:
    """One entry per group: {group: {dim: value}, points: [[bucket, value, count], …]}."""
    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in records(frame):
        key = tuple(row[g] for g in group_by)
        entry = series.setdefault(
            key, {"group": dict(zip(group_by, key, strict=True)), "points": []}
        )
        entry["points"].append([row["bucket"], row["value"], row["count"]])
    return list(series.values())


@router.get("/api/monitoring/performance/analytics")
def performance_analytics(
    request: Request,
    metric: str = "response_time",
    segment: str | None = None,
    preset: Preset = "24h",
    start: From = None,
    end: To = None,
) -> dict[str, Any]:
    """Percentiles per endpoint (`metric=response_time`) or per page/device for a Web Vital.

    API timings give p50/p95/p99 per endpoint; Web Vitals (`metric=LCP|INP|CLS|FCP|TTFB|FID`)
    give the p75 and rating shares per `segment=page|device` (default page).
    """
    tr = _range(preset, start, end, datetime.now(UTC))
    if metric == "response_time":
        if segment not in (None, "endpoint"):
            raise InvalidItems([ItemError(None, "segment", "response_time is per endpoint")])
        with request.app.state.read.connect() as conn:
            rows = records(queries.endpoint_table(conn, tr))
        return {"metric": metric, "segment": "endpoint", "timeRange": _range_json(tr), "rows": rows}
    if metric not in VITAL_NAMES:
        allowed = ", ".join(["response_time", *sorted(VITAL_NAMES)])
        raise InvalidItems([ItemError(None, "metric", f"must be one of {allowed}")])
    column = {None: "page_route", "page": "page_route", "device": "device_type"}.get(segment)
    if column is None:
        raise InvalidItems([ItemError(None, "segment", "must be page or device")])
    with request.app.state.read.connect() as conn:
        frame = queries.web_vitals_summary(conn, tr, ("name", column))
    rows = records(frame[frame["name"] == metric]) if not frame.empty else []
    return {
        "metric": metric,
        "segment": segment or "page",
        "timeRange": _range_json(tr),
        "rows": rows,
    }


@router.get("/api/monitoring/performance/core-web-vitals")
def core_web_vitals(
    request: Request, preset: Preset = "7d", start: From = None, end: To = None
) -> dict[str, Any]:
    """p75, its rating and the good / needs-improvement / poor shares per metric, page, device."""
    tr = _range(preset, start, end, datetime.now(UTC))
    with request.app.state.read.connect() as conn:
        return {
            "timeRange": _range_json(tr),
            "by_metric": records(queries.web_vitals_summary(conn, tr, ("name",))),
            "by_page": records(queries.web_vitals_summary(conn, tr, ("name", "page_route"))),
            "by_device": records(queries.web_vitals_summary(conn, tr, ("name", "device_type"))),
        }
