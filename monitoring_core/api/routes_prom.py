"""Prometheus in and out: remote write (`POST /api/v1/write`) and the Prometheus HTTP query API.

Remote write answers as the remote-write 1.0 specification asks: 204 when stored; 400 (not
retried by senders) for an unreadable body or invalid series and samples, naming them, after
storing the valid rest; 413 for a body over the limit; 415 for another protocol version or
encoding; 429 (rate limit) and 503 (database) with `Retry-After`, which senders retry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.body import parse_json, read_body
from monitoring_core.api.deps import require_ingest
from monitoring_core.api.routes_ingest import app_cache, partition_days
from monitoring_core.flows.external_alerts import receive_alerts
from monitoring_core.ingest.metrics import (
    SeriesCache,
    SeriesKey,
    SeriesLimitExceeded,
    write_metrics,
)
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.prometheus.alertmanager import parse_alerts
from monitoring_core.prometheus.catalog import record_catalog
from monitoring_core.prometheus.remote_write import (
    CatalogEntry,
    Converted,
    RemoteWriteError,
    convert,
    decode,
)

__all__ = ["router"]

router = APIRouter()
write = APIRouter(tags=["prometheus"], dependencies=[Depends(require_ingest)])

_PROTOBUF = "application/x-protobuf"
# Decompressed bodies may be this many times the compressed limit (snappy shrinks ~5-10x).
_INFLATION = 8


async def _raw_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_headers(request: Request) -> None:
    media, _, params = request.headers.get("content-type", _PROTOBUF).partition(";")
    if media.strip().lower() != _PROTOBUF or "io.prometheus.write.v2" in params:
        raise HTTPException(
            415,
            "send remote write 1.0: Content-Type application/x-protobuf (prometheus.WriteRequest)",
        )
    encoding = request.headers.get("content-encoding", "snappy").strip().lower()
    if encoding != "snappy":
        raise HTTPException(415, f"unsupported content encoding {encoding!r}; use snappy")
    version = request.headers.get("x-prometheus-remote-write-version", "0.1.0").strip()
    if not version.startswith("0.1"):
        raise HTTPException(415, f"remote write version {version!r} is not supported; use 0.1.0")


def _catalog_news(app: FastAPI, entries: dict[str, CatalogEntry]) -> list[CatalogEntry]:
    """Entries this process has not written yet (declared metadata is re-sent every minute)."""
    seen: dict[str, CatalogEntry] = app_cache(app, "prometheus_catalog", dict)
    if len(seen) > 100_000:
        seen.clear()
    return [e for name, e in entries.items() if seen.get(name) != e]


def _store_write(app: FastAPI, body: bytes) -> Converted:
    now = datetime.now(UTC)
    max_bytes = app.state.settings.max_body_bytes * _INFLATION
    try:
        request = decode(body, max_bytes=max_bytes)
    except OverflowError as exc:
        raise HTTPException(413, str(exc)) from None
    days = partition_days(app)
    converted = convert(request, limits=days.limits("metric_points", now))
    batch, news = converted.batch, _catalog_news(app, converted.catalog)
    if not batch.values and not news:
        return converted
    series = app_cache(app, "metric_series", SeriesCache)
    cap = app.state.settings.max_series_per_metric

    def write_all(conn: Connection) -> dict[SeriesKey, int]:
        fresh = write_metrics(conn, batch, series, max_series_per_metric=cap) if batch else {}
        if news:
            record_catalog(conn, news)
        return fresh

    needs = {"metric_points": {moment.date() for moment in set(batch.times)}}
    series.update(days.write(needs, write_all))
    seen: dict[str, CatalogEntry] = app_cache(app, "prometheus_catalog", dict)
    seen.update({e.name: e for e in news})
    return converted


@write.post(
    "/api/v1/write",
    status_code=204,
    summary="Prometheus remote write 1.0 (snappy-compressed protobuf WriteRequest)",
    response_class=Response,
)
async def remote_write(request: Request) -> Response:
    """Samples from Prometheus' `remote_write` (or any remote-write 1.0 sender)."""
    _check_headers(request)
    max_bytes = request.app.state.settings.max_body_bytes
    body = await _raw_body(request, max_bytes)
    stats = request.app.state.stats
    try:
        converted = await run_in_threadpool(_store_write, request.app, body)
    except RemoteWriteError as exc:
        stats.count_items("remote_write", rejected=1)
        return PlainTextResponse(str(exc), status_code=400)
    except SeriesLimitExceeded as exc:  # retrying cannot help: 400, and nothing was stored
        stats.count_items("remote_write", rejected=1)
        return PlainTextResponse(exc.message, status_code=400)
    stats.count_items("remote_write", accepted=len(converted.batch), rejected=converted.refused)
    if converted.problems:
        text = f"{converted.refused} samples refused, {len(converted.batch)} stored:\n" + "\n".join(
            converted.problems
        )
        return PlainTextResponse(text, status_code=400)
    return Response(status_code=204)


# ---------------------------------------------------------------- Alertmanager
def _receive(app: FastAPI, payload: Any) -> dict[str, int]:
    now = datetime.now(UTC)
    settings = app.state.settings
    alerts = parse_alerts(payload, now=now)
    with app.state.engine.begin() as conn:
        report = receive_alerts(
            conn, alerts, now=now, tz=settings.tz, public_url=settings.public_url
        )
    return report.as_dict()


@write.post(
    "/api/v2/alerts",
    summary="Alerts from Prometheus or Grafana (Alertmanager API v2), or an Alertmanager webhook",
)
async def post_alerts(request: Request) -> JSONResponse:
    """`[{labels, annotations, startsAt, endsAt, generatorURL}]` or `{alerts: [...]}`."""
    body = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    payload = parse_json(body)
    try:
        report = await run_in_threadpool(_receive, request.app, payload)
    except InvalidItems:
        request.app.state.stats.count_items("alertmanager", rejected=1)
        raise
    request.app.state.stats.count_items("alertmanager", accepted=report["received"])
    return JSONResponse(report, status_code=200)


router.include_router(write)
