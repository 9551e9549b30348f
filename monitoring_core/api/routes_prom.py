"""Prometheus in and out: remote write (`POST /api/v1/write`) and the Prometheus HTTP query API.

Remote write answers as the remote-write 1.0 specification asks: 204 when stored; 400 (not
retried by senders) for an unreadable body or invalid series and samples, naming them, after
storing the valid rest; 413 for a body over the limit; 415 for another protocol version or
encoding; 429 (rate limit) and 503 (database) with `Retry-After`, which senders retry.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.body import parse_json, read_body, read_raw_body
from monitoring_core.api.deps import count_points, require_ingest, require_read
from monitoring_core.api.heavy import release_free_memory
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
from monitoring_core.prometheus.http_api import (
    BUILD_INFO,
    Answer,
    instant_answer,
    label_names,
    label_values,
    metadata,
    parse_duration_ms,
    parse_time_ms,
    range_answer,
    series,
)
from monitoring_core.prometheus.promql.model import QueryError
from monitoring_core.prometheus.remote_write import (
    CatalogEntry,
    Converted,
    RemoteWriteError,
    convert,
    decode,
)
from monitoring_core.prometheus.staleness import store_markers

__all__ = ["router"]

router = APIRouter()
write = APIRouter(tags=["prometheus"], dependencies=[Depends(require_ingest)])

_PROTOBUF = "application/x-protobuf"
# Decompressed bodies may be this many times the compressed limit (snappy shrinks ~5-10x).
_INFLATION = 8


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


def _store_write(app: FastAPI, body: bytes, spend: Callable[[int], None]) -> Converted:
    """Decode, convert, spend the key's point rate on the samples (`spend`: 429 past it, and
    then nothing is stored), write."""
    now = datetime.now(UTC)
    max_bytes = app.state.settings.max_body_bytes * _INFLATION
    try:
        request = decode(body, max_bytes=max_bytes)
    except OverflowError as exc:
        raise HTTPException(413, str(exc)) from None
    days = partition_days(app)
    converted = convert(request, limits=days.limits("metric_points", now))
    batch, news = converted.batch, _catalog_news(app, converted.catalog)
    spend(len(batch.values))
    if not batch.values and not news and not converted.stale_keys:
        return converted
    series = app_cache(app, "metric_series", SeriesCache)
    cap = app.state.settings.max_series_per_metric

    def write_all(conn: Connection) -> dict[SeriesKey, int]:
        fresh = write_metrics(conn, batch, series, max_series_per_metric=cap) if batch else {}
        if news:
            record_catalog(conn, news)
        if converted.stale_keys:
            store_markers(conn, converted.stale_keys, converted.stale_times, series, now=now)
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
    body = await read_raw_body(request, max_bytes=max_bytes)
    stats = request.app.state.stats
    try:
        converted = await run_in_threadpool(
            _store_write, request.app, body, lambda samples: count_points(request, samples)
        )
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
            conn, alerts, now=now, tz=app.state.live.calendar, public_url=settings.public_url
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


# ---------------------------------------------------------------- Prometheus HTTP API
read = APIRouter(tags=["prometheus"], dependencies=[Depends(require_read)])
_ERROR_STATUS = {"bad_data": 400, "execution": 422, "unavailable": 503}
# A query waiting this long for one of the process' evaluation slots is answered 503.
QUEUE_WAIT_S = 120.0  # Prometheus' default query timeout


class _Busy(QueryError):
    error_type = "unavailable"


class QueryGate:
    """At most `slots` PromQL queries evaluated and answered at once in this process (each
    holds up to MONITORING_PROMQL_MAX_SAMPLES samples, and its answer until it is sent); the
    others wait in line, up to QUEUE_WAIT_S. A slot is given back once the answer is written
    or dropped (`release` is idempotent and callable from any thread)."""

    def __init__(self, slots: int, wait_s: float = QUEUE_WAIT_S) -> None:
        self.slots, self.wait_s = slots, wait_s
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> Callable[[], None]:
        if self._semaphore is None:  # created on the serving event loop
            self._semaphore = asyncio.Semaphore(self.slots)
            self._loop = asyncio.get_running_loop()
        semaphore, loop = self._semaphore, self._loop
        assert loop is not None
        try:
            await asyncio.wait_for(semaphore.acquire(), self.wait_s)
        except TimeoutError:
            raise _Busy(
                f"too many queries at once ({self.slots} evaluated per process, "
                "MONITORING_PROMQL_CONCURRENCY); retry later"
            ) from None
        lock, done = threading.Lock(), [False]

        def release() -> None:
            with lock:
                if done[0]:
                    return
                done[0] = True
            try:
                loop.call_soon_threadsafe(semaphore.release)
            except RuntimeError:  # the loop is closed: the process is ending
                pass

        return release


def _gate(app: FastAPI) -> QueryGate:
    gate: QueryGate | None = getattr(app.state, "promql_gate", None)
    if gate is None:
        gate = app.state.promql_gate = QueryGate(app.state.settings.promql_concurrency)
    return gate


async def _params(request: Request) -> list[tuple[str, str]]:
    """Query-string parameters, plus a form-encoded POST body's (Grafana POSTs queries)."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in ("", "application/x-www-form-urlencoded"):
            raise HTTPException(415, "send the parameters form-encoded")
        body = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
        try:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise HTTPException(400, "the form body is not UTF-8") from None
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise HTTPException(422, "parameters must not contain NUL")
    return pairs


def _one(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)


def _prom(data: Any, status_code: int = 200) -> Response:
    body = orjson.dumps({"status": "success", "data": data}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, media_type="application/json")


def _prom_error(exc: QueryError, headers: dict[str, str] | None = None) -> Response:
    body = {"status": "error", "errorType": exc.error_type, "error": str(exc)}
    return Response(
        orjson.dumps(body),
        status_code=_ERROR_STATUS.get(exc.error_type, 400),
        media_type="application/json",
        headers=headers,
    )


async def _answer(request: Request, work: Callable[[Connection], Any]) -> Response:
    def run() -> Any:
        with request.app.state.engine.connect() as conn:
            return work(conn)

    try:
        return _prom(await run_in_threadpool(run))
    except QueryError as exc:
        return _prom_error(exc)


async def _query(request: Request, work: Callable[[Connection, int], Answer]) -> Response:
    """A PromQL query in one of the process' slots, with the sample limit; the answer's
    JSON is written a piece at a time and the slot held until it is sent."""
    try:
        release = await _gate(request.app).acquire()
    except QueryError as exc:
        return _prom_error(exc, {"Retry-After": "5"})
    max_samples = request.app.state.settings.promql_max_samples

    def run() -> Answer:
        with request.app.state.engine.connect() as conn:
            return work(conn, max_samples)

    try:
        answer = await run_in_threadpool(run)
    except QueryError as exc:
        release()
        release_free_memory()
        return _prom_error(exc)
    except BaseException:
        release()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield from answer.chunks()
        finally:
            release()
            release_free_memory()

    pieces = body()
    weakref.finalize(pieces, release)  # a response never started still gives its slot back
    return StreamingResponse(pieces, media_type="application/json")


def _now_ms() -> int:
    return round(datetime.now(UTC).timestamp() * 1000)


def _span(pairs: list[tuple[str, str]]) -> tuple[int | None, int | None]:
    start, end = _one(pairs, "start"), _one(pairs, "end")
    return (
        parse_time_ms(start, what="start") if start else None,
        parse_time_ms(end, what="end") if end else None,
    )


@read.api_route("/api/v1/query", methods=["GET", "POST"], summary="PromQL instant query")
async def prom_query(request: Request) -> Response:
    """`query`, `time` (RFC 3339 or Unix seconds; default now)."""
    pairs = await _params(request)
    try:
        query = _one(pairs, "query") or ""
        at = parse_time_ms(_one(pairs, "time"), default_ms=_now_ms())
    except QueryError as exc:
        return _prom_error(exc)
    return await _query(
        request, lambda conn, most: instant_answer(conn, query, at, max_samples=most)
    )


@read.api_route("/api/v1/query_range", methods=["GET", "POST"], summary="PromQL range query")
async def prom_query_range(request: Request) -> Response:
    """`query`, `start`, `end`, `step` (a duration or seconds)."""
    pairs = await _params(request)
    try:
        query = _one(pairs, "query") or ""
        start = parse_time_ms(_one(pairs, "start"), what="start")
        end = parse_time_ms(_one(pairs, "end"), what="end")
        step = parse_duration_ms(_one(pairs, "step"))
    except QueryError as exc:
        return _prom_error(exc)
    return await _query(
        request,
        lambda conn, most: range_answer(conn, query, start, end, step, max_samples=most),
    )


def _matches(pairs: list[tuple[str, str]]) -> list[str]:
    return [value for key, value in pairs if key in ("match[]", "match")]


@read.api_route("/api/v1/series", methods=["GET", "POST"], summary="Series by match[]")
async def prom_series(request: Request) -> Response:
    pairs = await _params(request)
    try:
        start, end = _span(pairs)
    except QueryError as exc:
        return _prom_error(exc)
    return await _answer(request, lambda conn: series(conn, _matches(pairs), start, end))


@read.api_route("/api/v1/labels", methods=["GET", "POST"], summary="Label names")
async def prom_labels(request: Request) -> Response:
    pairs = await _params(request)
    try:
        start, end = _span(pairs)
    except QueryError as exc:
        return _prom_error(exc)
    return await _answer(request, lambda conn: label_names(conn, _matches(pairs), start, end))


@read.get("/api/v1/label/{name}/values", summary="Values of one label")
async def prom_label_values(request: Request, name: str) -> Response:
    pairs = await _params(request)
    try:
        start, end = _span(pairs)
    except QueryError as exc:
        return _prom_error(exc)
    return await _answer(
        request, lambda conn: label_values(conn, name, _matches(pairs), start, end)
    )


@read.get("/api/v1/metadata", summary="Metric metadata (type, help, unit) per family")
async def prom_metadata(request: Request) -> Response:
    pairs = await _params(request)
    raw_limit = _one(pairs, "limit")
    limit = int(raw_limit) if raw_limit and raw_limit.lstrip("-").isdigit() else None
    return await _answer(request, lambda conn: metadata(conn, _one(pairs, "metric"), limit))


@read.get("/api/v1/status/buildinfo", summary="Which Prometheus API this answers as")
async def prom_buildinfo() -> Response:
    return _prom(BUILD_INFO)


@read.get("/api/v1/query_exemplars", summary="Exemplars (none are stored: an empty list)")
async def prom_exemplars() -> Response:
    return _prom([])


router.include_router(write)
router.include_router(read)
