"""Ingest routes: metrics and performance (API timings and Web Vitals)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.body import read_json_items
from monitoring_core.api.deps import count_points, require_ingest
from monitoring_core.ingest.metrics import SeriesCache, validate_metrics, write_metrics
from monitoring_core.ingest.partition_days import PartitionDays
from monitoring_core.ingest.performance import (
    RequestContext,
    validate_performance,
    write_performance,
)
from monitoring_core.ingest.validate import InvalidItems, Limits

__all__ = ["app_cache", "router"]

router = APIRouter(tags=["ingest"], dependencies=[Depends(require_ingest)])
T = TypeVar("T")


def app_cache(app: FastAPI, name: str, factory: Callable[[], T]) -> T:
    """A per-app in-process cache object, created on first use (reset by reset_app_state)."""
    caches: dict[str, Any] = app.state.caches
    if name not in caches:
        caches.setdefault(name, factory())
    cache: T = caches[name]
    return cache


def partition_days(app: FastAPI) -> PartitionDays:
    return app_cache(app, "partition_days", lambda: PartitionDays(app.state.engine))


def _body_schema(example: dict[str, Any]) -> dict[str, Any]:
    schema = {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
    content = {"schema": schema, "example": [example]}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def _store_metrics(app: FastAPI, items: list[dict[str, Any]]) -> int:
    now = datetime.now(UTC)
    days = partition_days(app)
    batch = validate_metrics(items, limits=days.limits("metric_points", now), now=now)
    series = app_cache(app, "metric_series", SeriesCache)
    needs = {"metric_points": {moment.date() for moment in set(batch.times)}}
    cap = app.state.settings.max_series_per_metric
    fresh = days.write(
        needs, lambda conn: write_metrics(conn, batch, series, max_series_per_metric=cap)
    )
    series.update(fresh)  # only after commit: a rolled-back series id must not be cached
    return len(batch)


@router.post(
    "/api/monitoring/metrics",
    status_code=202,
    summary="Ingest metric points",
    openapi_extra=_body_schema(
        {
            "metric_name": "bookings_created",
            "metric_value": 3,
            "timestamp": "2026-06-06T14:00:00Z",
            "dimensions": {"region": "uk"},
            "source_system": "bookings-api",
        }
    ),
)
async def ingest_metrics(request: Request) -> JSONResponse:
    """`{metric_name, metric_value, timestamp?, dimensions?, source_system?}` or an array."""
    items = await read_json_items(
        request, max_bytes=request.app.state.settings.max_body_bytes, nested=False
    )
    count_points(request, len(items))
    stats = request.app.state.stats
    try:
        accepted = await run_in_threadpool(_store_metrics, request.app, items)
    except InvalidItems:
        stats.count_items("metrics", rejected=len(items))
        raise
    stats.count_items("metrics", accepted=accepted)
    return JSONResponse({"accepted": accepted}, status_code=202)


def _store_performance(
    app: FastAPI, items: list[dict[str, Any]], context: RequestContext
) -> tuple[int, int]:
    now = datetime.now(UTC)
    days = partition_days(app)
    timing_limits, vital_limits = days.limits("api_timings", now), days.limits("web_vitals", now)
    limits = Limits(max(timing_limits.oldest, vital_limits.oldest), timing_limits.newest)
    batch = validate_performance(items, limits=limits, now=now, context=context)
    needs = {
        "api_timings": {row[0].date() for row in batch.timings},
        "web_vitals": {row[0].date() for row in batch.vitals},
    }
    return days.write(needs, lambda conn: write_performance(conn, batch))


@router.post(
    "/api/monitoring/performance",
    status_code=202,
    summary="Ingest API timings and Web Vitals",
    openapi_extra=_body_schema(
        {
            "method": "GET",
            "endpoint": "/api/vendors/search",
            "status_code": 200,
            "response_time_ms": 182.5,
        }
    ),
)
async def ingest_performance(request: Request) -> JSONResponse:
    """API timings and Web Vitals; `text/plain` accepted for `navigator.sendBeacon`."""
    items = await read_json_items(
        request, max_bytes=request.app.state.settings.max_body_bytes, allow_text=True, nested=False
    )
    count_points(request, len(items))
    context = RequestContext(
        referer=request.headers.get("referer"), user_agent=request.headers.get("user-agent")
    )
    stats = request.app.state.stats
    try:
        timings, vitals = await run_in_threadpool(_store_performance, request.app, items, context)
    except InvalidItems:
        stats.count_items("performance", rejected=len(items))
        raise
    stats.count_items("api_timings", accepted=timings)
    stats.count_items("web_vitals", accepted=vitals)
    return JSONResponse(
        {"accepted": timings + vitals, "api_timings": timings, "web_vitals": vitals},
        status_code=202,
    )
