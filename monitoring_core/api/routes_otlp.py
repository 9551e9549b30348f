"""OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` (docs/PROTOCOLS.md "OTLP").

Binary protobuf (`application/x-protobuf`) or JSON (`application/json`) on the same routes,
gzip or deflate bodies, the size cap applied after decompression. Answers as the OTLP/HTTP
specification says: 200 with an Export…ServiceResponse (its `partial_success` counts what was
refused, and why), 400 unreadable, 401/403 key, 413 too large, 415 content type, 429 rate
limited and 503 database unavailable (both with `Retry-After`); every error body is a
`google.rpc.Status` in the request's encoding. Keys as on every ingest route
(`Authorization: Bearer KEY` or `X-API-Key: KEY`, which `OTEL_EXPORTER_OTLP_HEADERS` can set).

Also `store_sentry_transactions`, called by the Sentry envelope route for `transaction` items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.app import DB_UNAVAILABLE_ERRORS, RETRY_AFTER_S
from monitoring_core.api.body import read_body, read_json_items
from monitoring_core.api.deps import (
    INGEST_SCOPES,
    check_key,
    count_points,
    presented_key,
    require_ingest,
)
from monitoring_core.api.routes_ingest import app_cache, partition_days
from monitoring_core.errors.envelope import EnvelopeError, EnvelopeItem
from monitoring_core.ingest.copy import copy_rows
from monitoring_core.ingest.metrics import SeriesCache
from monitoring_core.ingest.performance import TIMING_COLUMNS
from monitoring_core.ingest.validate import InvalidItems, Limits
from monitoring_core.logs.sentry import sentry_log_rows
from monitoring_core.logs.store import Admission, admit, insert_logs
from monitoring_core.logs.validate import validate_logs
from monitoring_core.otlp.decode import (
    JSON,
    Signal,
    UnreadableBody,
    encoding_of,
    item_count,
    parse_request,
    response_body,
    status_body,
)
from monitoring_core.otlp.logs import logs_from_request
from monitoring_core.otlp.metrics import MetricsResult, observations, store_metrics
from monitoring_core.otlp.traces import spans_from_request
from monitoring_core.traces.sentry import transaction_spans
from monitoring_core.traces.store import insert_spans

__all__ = ["router", "store_sentry_logs", "store_sentry_transactions"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["otlp"])

# HTTP status → gRPC code in the google.rpc.Status body.
_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,
    429: 8,
    503: 14,  # UNAVAILABLE
}
_DATA_ERRORS = (sqlalchemy.exc.DataError, psycopg.DataError)


def _error(
    status: int, message: str, encoding: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status_body(_GRPC_CODES.get(status, 2), message, encoding),
        status_code=status,
        media_type=encoding,
        headers=headers,
    )


def _window(app: FastAPI, tables: tuple[str, ...], now: datetime) -> Limits:
    days = partition_days(app)
    every = [days.limits(table, now) for table in tables]
    return Limits(max(limit.oldest for limit in every), min(limit.newest for limit in every))


def _store_traces(app: FastAPI, request: Any) -> tuple[int, int, str]:
    now = datetime.now(UTC)
    batch = spans_from_request(request, _window(app, ("spans", "api_timings"), now))
    _write_spans(app, batch.spans, batch.timings)
    app.state.stats.count_items("otlp_spans", accepted=len(batch.spans), rejected=batch.rejected)
    return len(batch.spans), batch.rejected, batch.reason


def _write_spans(
    app: FastAPI, spans: list[tuple[Any, ...]], timings: list[tuple[Any, ...]]
) -> None:
    if not spans:
        return
    needs = {
        "spans": {row[0].date() for row in spans},
        "api_timings": {row[0].date() for row in timings},
    }
    names, types = zip(*TIMING_COLUMNS, strict=True)

    def write(conn: Any) -> None:
        insert_spans(conn, spans)
        if timings:
            copy_rows(conn, "api_timings", names, types, timings)

    partition_days(app).write(needs, write)


def _write_logs(app: FastAPI, rows: list[tuple[Any, ...]]) -> Admission:
    """Store the rows within each service's daily cap; the refused ones are counted."""
    if not rows:
        return Admission([])
    cap = app.state.settings.log_records_per_service_day

    def write(conn: Any) -> Admission:
        admitted = admit(conn, rows, cap)
        insert_logs(conn, admitted.rows)
        return admitted

    return partition_days(app).write({"log_records": {row[0].date() for row in rows}}, write)


def _until_tomorrow(now: datetime) -> str:
    """Retry-After for a service over its daily cap: seconds to the next UTC midnight."""
    midnight = datetime.combine(now.date(), datetime.min.time(), UTC) + timedelta(days=1)
    return str(max(1, int((midnight - now).total_seconds())))


class CapReached(Exception):
    """Every record of a request was over its service's daily cap (a 429)."""

    def __init__(self, message: str, retry_after: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _store_logs(app: FastAPI, request: Any) -> tuple[int, int, str]:
    now = datetime.now(UTC)
    batch = logs_from_request(request, _window(app, ("log_records",), now))
    admitted = _write_logs(app, batch.rows)
    accepted, rejected = len(admitted.rows), batch.rejected + admitted.refused
    app.state.stats.count_items("otlp_logs", accepted=accepted, rejected=rejected)
    if admitted.refused and not accepted:
        raise CapReached(admitted.reason, _until_tomorrow(now))
    return accepted, rejected, admitted.reason or batch.reason


def _store_metrics(app: FastAPI, request: Any) -> tuple[int, int, str]:
    now = datetime.now(UTC)
    limits = _window(app, ("metric_points",), now)
    result = MetricsResult()
    obs = observations(request, limits, result)
    series = app_cache(app, "metric_series", SeriesCache)
    if obs:
        days = {o.time.date() for o in obs}
        needs = {"metric_points": days, "metric_histograms": days}
        oldest_ns = int(limits.oldest.timestamp() * 1e9)
        fresh = partition_days(app).write(
            needs,
            lambda conn: store_metrics(
                conn,
                obs,
                series,
                oldest_ns=oldest_ns,
                max_series_per_metric=app.state.settings.max_series_per_metric,
                result=result,
            ),
        )
        series.update(fresh)  # only after commit
    app.state.stats.count_items(
        "otlp_points", accepted=len(result.points), rejected=result.rejected
    )
    return len(result.points), result.rejected, result.reason


_STORES = {Signal.TRACES: _store_traces, Signal.METRICS: _store_metrics, Signal.LOGS: _store_logs}


async def _export(request: Request, signal: Signal) -> Response:
    encoding = encoding_of(request.headers.get("content-type", ""))
    if encoding is None:
        media = request.headers.get("content-type", "")
        return _error(
            415,
            f"unsupported content type {media[:100]!r}; send application/x-protobuf or application/json",
            JSON,
        )
    try:
        await check_key(request, presented_key(request, allow_query=False), INGEST_SCOPES)
        body = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    except HTTPException as exc:
        return _error(exc.status_code, str(exc.detail), encoding, dict(exc.headers or {}))
    try:
        message = parse_request(signal, body, encoding)
    except UnreadableBody as exc:
        return _error(400, str(exc)[:1000], encoding)
    try:
        count_points(request, item_count(signal, message))  # the key's point rate
    except HTTPException as exc:
        return _error(exc.status_code, str(exc.detail), encoding, dict(exc.headers or {}))
    try:
        _, rejected, reason = await run_in_threadpool(_STORES[signal], request.app, message)
    except DB_UNAVAILABLE_ERRORS as exc:
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        return _error(
            503, "database unavailable, retry later", encoding, {"Retry-After": str(RETRY_AFTER_S)}
        )
    except _DATA_ERRORS as exc:
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or ["invalid value"])[0][:300]
        return _error(400, f"a value cannot be stored: {reason}", encoding)
    except CapReached as exc:
        return _error(429, str(exc), encoding, {"Retry-After": exc.retry_after})
    return Response(response_body(signal, encoding, rejected, reason), media_type=encoding)


def _route(signal: Signal) -> None:
    async def export(request: Request) -> Response:
        return await _export(request, signal)

    export.__doc__ = (
        f"OTLP/HTTP {signal.value} export: protobuf or JSON Export…ServiceRequest, gzip allowed."
    )
    router.add_api_route(
        f"/v1/{signal.value}",
        export,
        methods=["POST"],
        summary=f"OTLP/HTTP {signal.value}",
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            }
        },
    )


for _signal in Signal:
    _route(_signal)


def _store_log_items(app: FastAPI, items: list[dict[str, Any]]) -> Admission:
    now = datetime.now(UTC)
    rows = validate_logs(items, limits=_window(app, ("log_records",), now), now=now)
    return _write_logs(app, rows)


@router.post(
    "/api/monitoring/logs",
    status_code=202,
    summary="Ingest log records (JSON batch)",
    dependencies=[Depends(require_ingest)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": [
                        {
                            "service": "payments",
                            "severity": "ERROR",
                            "body": "card declined by provider",
                            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                            "attributes": {"provider": "stripe"},
                        }
                    ],
                }
            },
        }
    },
)
async def ingest_logs(request: Request) -> JSONResponse:
    """`{service, body, severity?|severity_number?, timestamp?, trace_id?, span_id?,
    attributes?}` or an array of them; the whole batch is refused (422) when an item is bad.
    Records past their service's daily cap are refused and counted: `refused` and `reason`
    in the 202, or a 429 (with `Retry-After`) when none was stored."""
    items = await read_json_items(request, max_bytes=request.app.state.settings.max_body_bytes)
    count_points(request, len(items))
    stats = request.app.state.stats
    try:
        admitted = await run_in_threadpool(_store_log_items, request.app, items)
    except InvalidItems:
        stats.count_items("logs", rejected=len(items))
        raise
    accepted = len(admitted.rows)
    stats.count_items("logs", accepted=accepted, rejected=admitted.refused)
    if admitted.refused and not accepted:
        raise HTTPException(
            429, admitted.reason, headers={"Retry-After": _until_tomorrow(datetime.now(UTC))}
        )
    body: dict[str, Any] = {"accepted": accepted}
    if admitted.refused:
        body |= {"refused": admitted.refused, "reason": admitted.reason}
    return JSONResponse(body, status_code=202)


async def store_sentry_transactions(
    request: Request, items: Iterable[EnvelopeItem], project_id: str
) -> int:
    """Spans and API timings from an envelope's `transaction` items (the Sentry envelope route
    calls this); an unreadable item is counted as rejected. Returns the spans stored."""
    events: list[dict[str, Any]] = []
    unreadable = 0
    for item in items:
        if item.type == "transaction":
            try:
                events.append(item.json())
            except EnvelopeError:
                unreadable += 1
    if unreadable:
        request.app.state.stats.count_items("sentry_spans", rejected=unreadable)
    if not events:
        return 0

    def store() -> int:
        app = request.app
        now = datetime.now(UTC)
        limits = _window(app, ("spans", "api_timings"), now)
        spans: list[tuple[Any, ...]] = []
        timings: list[tuple[Any, ...]] = []
        rejected = 0
        for event in events:
            mapped = transaction_spans(event, project_id, limits)
            spans += mapped.spans
            timings += mapped.timings
            rejected += mapped.rejected
        _write_spans(app, spans, timings)
        app.state.stats.count_items("sentry_spans", accepted=len(spans), rejected=rejected)
        return len(spans)

    return await run_in_threadpool(store)


async def store_sentry_logs(
    request: Request, items: Iterable[EnvelopeItem], project_id: str
) -> int:
    """Log records from an envelope's `log` items (the Sentry envelope route calls this);
    returns the records stored."""
    payloads: list[dict[str, Any]] = []
    refused = 0
    for item in items:
        if item.type == "log":
            try:
                payloads.append(item.json())
            except EnvelopeError:
                refused += 1
    if not payloads:
        if refused:
            request.app.state.stats.count_items("sentry_logs", rejected=refused)
        return 0

    def store() -> int:
        app = request.app
        limits = _window(app, ("log_records",), datetime.now(UTC))
        rows: list[tuple[Any, ...]] = []
        rejected = refused
        for payload in payloads:
            mapped, bad = sentry_log_rows(payload, project_id, limits)
            rows += mapped
            rejected += bad
        admitted = _write_logs(app, rows)
        rejected += admitted.refused
        app.state.stats.count_items("sentry_logs", accepted=len(admitted.rows), rejected=rejected)
        return len(admitted.rows)

    return await run_in_threadpool(store)
