"""Health routes: admin CRUD of checks, heartbeat pings, live health, Pushgateway pushes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.admin_io import actor_of
from monitoring_core.api.body import parse_json, read_body
from monitoring_core.api.deps import count_points, require_admin, require_ingest, require_read
from monitoring_core.api.heavy import HeavyGate, may_be_heavy, release_free_memory
from monitoring_core.api.params import ID_MAX, Id
from monitoring_core.api.routes_ingest import app_cache, partition_days
from monitoring_core.audit import record_audit
from monitoring_core.collectors.store import list_collectors, public_collector, save_collector
from monitoring_core.health.queries import (
    check_detail,
    check_summaries,
    health_overview,
    public_check,
)
from monitoring_core.health.runner import receive_ping, run_check_now
from monitoring_core.health.service import pause_check, resume_check, save_check
from monitoring_core.health.store import (
    PingMeta,
    get_check,
    list_flips,
    list_results,
)
from monitoring_core.ingest.metrics import SeriesCache, SeriesLimitExceeded, write_metrics
from monitoring_core.prometheus import (
    ExpositionError,
    GroupingKeyError,
    parse_exposition,
    parse_grouping_key,
    samples_to_batch,
)
from monitoring_core.prometheus.parser import SeriesMemo
from monitoring_core.prometheus.pushgateway import KeyMemo
from monitoring_core.timerange import parse_time_range

__all__ = ["router"]

router = APIRouter()
admin = APIRouter(tags=["admin: health"], dependencies=[Depends(require_admin)])
pings = APIRouter(tags=["heartbeat pings"])
live = APIRouter(tags=["live"], dependencies=[Depends(require_read)])
push = APIRouter(tags=["pushgateway"], dependencies=[Depends(require_ingest)])
ADMIN = "/api/admin/monitoring/health"


def _json(content: Any, status_code: int = 200) -> Response:
    """orjson renders datetimes as ISO 8601 and is fast on big history lists."""
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)  # row keys are str subclasses
    return Response(body, status_code=status_code, media_type="application/json")


def _now() -> datetime:
    return datetime.now(UTC)


def _base_url(request: Request) -> str:
    """Where ping URLs point: the configured public URL of the API, never the request's Host
    header (which the sender chooses: a forged Host would hand out URLs to its own server)."""
    return str(request.app.state.settings.api_public_url).rstrip("/")


async def _json_body(request: Request) -> Any:
    raw = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    return parse_json(raw)


# ---------------------------------------------------------------- admin
@admin.get(ADMIN, summary="Every health check with status and uptime")
async def list_health(request: Request) -> Response:
    def read() -> list[dict[str, Any]]:
        with request.app.state.read.connect() as conn:
            # Admins see what they edit: header values and ping tokens (docs/API.md).
            return check_summaries(conn, _now(), base_url=_base_url(request), reveal_secrets=True)

    return _json({"checks": await run_in_threadpool(read)})


@admin.get(ADMIN + "/history", summary="Results of one check, or status flips of all")
async def health_history(
    request: Request,
    check_id: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    kind: str | None = None,
    timeRange: str | None = None,
) -> Response:
    """`kind=results` (needs `check_id`) or `kind=flips`; `timeRange` or `from`/`to`."""
    kind = kind or ("results" if check_id is not None else "flips")
    if kind not in ("results", "flips") or (kind == "results" and check_id is None):
        raise HTTPException(400, "kind must be 'flips', or 'results' with a check_id")
    query = request.query_params
    try:
        span = parse_time_range(timeRange, now=_now(), start=query.get("from"), end=query.get("to"))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None

    def read() -> list[dict[str, Any]]:
        with request.app.state.read.connect() as conn:
            if kind == "flips":
                return list_flips(conn, since=span.start, check_id=check_id)
            assert check_id is not None
            return list_results(conn, check_id, start=span.start, end=span.end)

    return _json({"kind": kind, "items": await run_in_threadpool(read)})


def _save_check(
    app: FastAPI, body: Any, check_id: int | None, actor: str, base_url: str
) -> dict | None:
    with app.state.engine.begin() as conn:
        row = save_check(conn, body, check_id=check_id, actor=actor, now=_now())
        return None if row is None else public_check(row, base_url, reveal_secrets=True)


@admin.post(ADMIN + "/checks", status_code=201, summary="Add a health check")
async def add_check(request: Request) -> Response:
    body = await _json_body(request)
    actor = actor_of(request)
    saved = await run_in_threadpool(_save_check, request.app, body, None, actor, _base_url(request))
    return _json(saved, status_code=201)


@admin.put(ADMIN + "/checks/{check_id}", summary="Change a health check")
async def change_check(request: Request, check_id: Id) -> Response:
    body = await _json_body(request)
    actor = actor_of(request)
    saved = await run_in_threadpool(
        _save_check, request.app, body, check_id, actor, _base_url(request)
    )
    if saved is None:
        raise HTTPException(404, f"no health check with id {check_id}")
    return _json(saved)


def _span(request: Request, time_range: str | None) -> Any:
    query = request.query_params
    try:
        return parse_time_range(
            time_range, now=_now(), start=query.get("from"), end=query.get("to")
        )
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@admin.get(ADMIN + "/checks/{check_id}", summary="One check: ping log, status timeline, next ping")
async def get_check_detail(
    request: Request, check_id: Id, timeRange: str | None = None
) -> Response:
    """Pings (no bodies: size and SHA-256), results, flips and status bands in `timeRange`
    (or `from`/`to`; default 24h), with the last and the next expected ping."""
    span = _span(request, timeRange or (None if "from" in request.query_params else "24h"))

    def read() -> dict[str, Any] | None:
        with request.app.state.read.connect() as conn:
            return check_detail(
                conn,
                check_id,
                _now(),
                span.start,
                span.end,
                base_url=_base_url(request),
                reveal_secrets=True,
            )

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(404, f"no health check with id {check_id}")
    return _json(found)


def _pause(app: FastAPI, check_id: int, paused: bool, actor: str, base_url: str) -> dict | None:
    change = pause_check if paused else resume_check
    with app.state.engine.begin() as conn:
        row = change(conn, check_id, actor=actor, now=_now())
        return None if row is None else public_check(row, base_url, reveal_secrets=True)


@admin.post(ADMIN + "/checks/{check_id}/pause", summary="Pause a check: not run, not alerted on")
async def pause(request: Request, check_id: Id) -> Response:
    """Audited; pausing a paused check changes nothing. A heartbeat's next ping resumes it."""
    args = (request.app, check_id, True, actor_of(request), _base_url(request))
    saved = await run_in_threadpool(_pause, *args)
    if saved is None:
        raise HTTPException(404, f"no health check with id {check_id}")
    return _json(saved)


@admin.post(ADMIN + "/checks/{check_id}/resume", summary="Resume a paused check")
async def resume(request: Request, check_id: Id) -> Response:
    """Audited; probes run at once, a heartbeat waits for its next ping."""
    args = (request.app, check_id, False, actor_of(request), _base_url(request))
    saved = await run_in_threadpool(_pause, *args)
    if saved is None:
        raise HTTPException(404, f"no health check with id {check_id}")
    return _json(saved)


def _is_paused(app: FastAPI, check_id: int) -> bool:
    with app.state.engine.connect() as conn:
        check = get_check(conn, check_id)
    return check is not None and check.paused_at is not None


@admin.post(ADMIN + "/checks/{check_id}/run", summary="Run a check now and record it")
async def run_now(request: Request, check_id: Id) -> Response:
    if await run_in_threadpool(_is_paused, request.app, check_id):
        raise HTTPException(409, f"health check {check_id} is paused: resume it first")
    run = await run_in_threadpool(run_check_now, request.app.state.engine, check_id, _now())
    if run is None:
        raise HTTPException(404, f"no health check with id {check_id}")
    return _json(
        {
            "success": run.outcome.success,
            "message": run.outcome.message,
            "response_time_ms": run.outcome.response_time_ms,
            "status": run.transition.status.value,
        }
    )


# ---------------------------------------------------------------- admin: collectors
COLLECTORS = "/api/admin/monitoring/collectors"


@admin.get(COLLECTORS, summary="Admin-defined SQL collectors and Prometheus scrapes")
async def list_admin_collectors(request: Request) -> Response:
    def read() -> list[dict[str, Any]]:
        with request.app.state.read.connect() as conn:
            return [public_collector(row) for row in list_collectors(conn)]

    return _json({"collectors": await run_in_threadpool(read)})


def _save_collector(app: FastAPI, body: Any, collector_id: int | None, actor: str) -> dict | None:
    with app.state.engine.begin() as conn:
        row = save_collector(conn, body, collector_id=collector_id, actor=actor, now=_now())
        return None if row is None else public_collector(row)


@admin.post(COLLECTORS, status_code=201, summary="Add a SQL collector or a scrape")
async def add_collector(request: Request) -> Response:
    """`{name, kind: sql|prometheus_scrape, url, query?, metric_name?, interval_seconds?}`."""
    body = await _json_body(request)
    actor = actor_of(request)
    saved = await run_in_threadpool(_save_collector, request.app, body, None, actor)
    return _json(saved, status_code=201)


@admin.put(COLLECTORS + "/{collector_id}", summary="Change a collector")
async def change_collector(request: Request, collector_id: Id) -> Response:
    body = await _json_body(request)
    actor = actor_of(request)
    saved = await run_in_threadpool(_save_collector, request.app, body, collector_id, actor)
    if saved is None:
        raise HTTPException(404, f"no collector with id {collector_id}")
    return _json(saved)


# ---------------------------------------------------------------- heartbeat pings
def _ping(app: FastAPI, token: str, kind: str, meta: PingMeta) -> bool:
    with app.state.engine.begin() as conn:
        return receive_ping(conn, token, kind, _now(), meta) is not None


async def _ping_meta(request: Request, exit_status: int | None) -> PingMeta:
    """What the ping log keeps of the request: the body is hashed as it streams in (up to
    max_body_bytes; the rest is not read) and never stored."""
    digest, size, limit = hashlib.sha256(), 0, request.app.state.settings.max_body_bytes
    if request.method == "POST":
        async for chunk in request.stream():
            digest.update(chunk[: max(limit - size, 0)])
            size += len(chunk)
            if size >= limit:
                break
    return PingMeta(
        source=request.client.host if request.client else None,
        method=request.method,
        user_agent=request.headers.get("user-agent"),
        body_bytes=min(size, limit),
        body_sha256=digest.hexdigest() if size else None,
        exit_status=exit_status,
    )


async def _ping_response(
    request: Request, token: str, kind: str, exit_status: int | None = None
) -> PlainTextResponse:
    if len(token) > 200:
        return PlainTextResponse("not found", status_code=404)
    meta = await _ping_meta(request, exit_status)
    if not await run_in_threadpool(_ping, request.app, token, kind, meta):
        return PlainTextResponse("not found", status_code=404)
    return PlainTextResponse("OK")  # Healthchecks.io answers a ping with "OK"


_PING_METHODS = ("GET", "POST", "HEAD")


def _multi_method(router: APIRouter, path: str, methods: tuple[str, ...], **options: Any) -> Any:
    """Register one endpoint per method, each with its own OpenAPI operation id."""

    def register(endpoint: Any) -> Any:
        for method in methods:
            operation = f"{endpoint.__name__}_{method.lower()}"
            router.add_api_route(
                path, endpoint, methods=[method], operation_id=operation, **options
            )
        return endpoint

    return register


@_multi_method(pings, "/api/monitoring/heartbeat/{token}", _PING_METHODS)
async def heartbeat_ping(request: Request, token: str) -> PlainTextResponse:
    """The job finished fine (Healthchecks.io-style; no API key: the token is the secret)."""
    return await _ping_response(request, token, "success")


@_multi_method(pings, "/api/monitoring/heartbeat/{token}/start", _PING_METHODS)
async def heartbeat_start(request: Request, token: str) -> PlainTextResponse:
    """The job started: it must ping within the grace time."""
    return await _ping_response(request, token, "start")


@_multi_method(pings, "/api/monitoring/heartbeat/{token}/fail", _PING_METHODS)
async def heartbeat_fail(request: Request, token: str) -> PlainTextResponse:
    """The job failed: the check goes down at once."""
    return await _ping_response(request, token, "fail")


@_multi_method(pings, "/api/monitoring/heartbeat/{token}/{exit_status}", _PING_METHODS)
async def heartbeat_exit_status(
    request: Request, token: str, exit_status: str
) -> PlainTextResponse:
    """Healthchecks.io's exit-status ping (`job.sh; curl …/$?`): 0 succeeds, 1–255 fails."""
    # ASCII digits only: str.isdigit() also accepts "¹" and "٣", which int() then refuses.
    if not (exit_status.isascii() and exit_status.isdigit()) or int(exit_status) > 255:
        return PlainTextResponse("exit status must be 0-255", status_code=400)
    status = int(exit_status)
    return await _ping_response(request, token, "success" if status == 0 else "fail", status)


# ---------------------------------------------------------------- live
@live.get("/api/monitoring/live/health", summary="Status of every enabled check")
async def live_health(request: Request) -> Response:
    def read() -> dict[str, Any]:
        with request.app.state.read.connect() as conn:
            return health_overview(conn, _now())

    return _json(await run_in_threadpool(read))


# ---------------------------------------------------------------- Pushgateway
_TEXT_TYPES = {"", "text/plain"}


def _store_push(request: Request, body: bytes, grouping: dict[str, str]) -> int:
    now, app = _now(), request.app
    series_memo: SeriesMemo = app_cache(app, "prometheus_series_memo", dict)
    key_memo: KeyMemo = app_cache(app, "prometheus_key_memo", dict)
    parsed = parse_exposition(body, memo=series_memo)
    batch = samples_to_batch(parsed, grouping, now=now, memo=key_memo)
    count_points(request, len(batch) - 1)  # 429 past the key's point rate (ratelimit.py)
    partition_days(app).ensure("metric_points", {now.date()})
    series = app_cache(app, "metric_series", SeriesCache)
    with app.state.engine.begin() as conn:
        fresh = write_metrics(
            conn, batch, series, max_series_per_metric=app.state.settings.max_series_per_metric
        )
    series.update(fresh)
    return len(batch) - 1  # the push_time_seconds marker is ours, not the client's


def _grouping(path: str) -> dict[str, str]:
    try:
        return parse_grouping_key(path.strip("/").split("/"))
    except GroupingKeyError as exc:
        raise HTTPException(400, str(exc)) from None


# Pushes over this many bytes (or compressed, or of unknown length) wait for one of
# HEAVY_PUSHES slots before their body is read: memory stays bounded whatever the number of
# concurrent senders (see api/heavy.py); smaller pushes never wait.
HEAVY_PUSH_BYTES = 64 * 1024
HEAVY_PUSHES = 1
HEAVY_PUSH_WAIT_S = 30.0


async def _read_and_store(request: Request, grouping: dict[str, str]) -> int:
    body = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    try:
        return await run_in_threadpool(_store_push, request, body, grouping)
    finally:
        del body  # freed before the next waiting push takes the slot


@_multi_method(push, "/metrics/{first}/{rest:path}", ("PUT", "POST"), status_code=202)
async def pushgateway_push(request: Request, first: str, rest: str) -> JSONResponse:
    """`prometheus_client.push_to_gateway` (PUT) and `pushadd_to_gateway` (POST). Large
    pushes are handled HEAVY_PUSHES at a time; one that waited HEAVY_PUSH_WAIT_S gets 503
    with Retry-After."""
    grouping = _grouping(f"{first}/{rest}")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _TEXT_TYPES:
        raise HTTPException(415, f"unsupported content type {media!r}; send the text format")
    try:
        if may_be_heavy(request, HEAVY_PUSH_BYTES):
            gate = app_cache(
                request.app, "heavy_pushes", lambda: HeavyGate(HEAVY_PUSHES, HEAVY_PUSH_WAIT_S)
            )
            async with gate.slot("pushes"):
                try:
                    accepted = await _read_and_store(request, grouping)
                finally:
                    await run_in_threadpool(release_free_memory)
        else:
            accepted = await _read_and_store(request, grouping)
    except ExpositionError as exc:
        request.app.state.stats.count_items("pushgateway", rejected=1)
        return JSONResponse({"detail": str(exc), "line": exc.line}, status_code=400)
    except SeriesLimitExceeded as exc:  # the cardinality cap: the push stored nothing
        request.app.state.stats.count_items("pushgateway", rejected=1)
        return JSONResponse(
            {"detail": exc.message, "metric": exc.metric, "limit": exc.limit}, status_code=422
        )
    request.app.state.stats.count_items("pushgateway", accepted=accepted)
    return JSONResponse({"accepted": accepted}, status_code=202)


@push.delete("/metrics/{first}/{rest:path}", status_code=202)
async def pushgateway_delete(request: Request, first: str, rest: str) -> JSONResponse:
    """`delete_from_gateway`: stored points are history and stay; the deletion is audited."""
    grouping = _grouping(f"{first}/{rest}")

    def audit() -> None:
        with request.app.state.engine.begin() as conn:
            record_audit(
                conn,
                actor=actor_of(request),
                action="pushgateway.delete",
                target=grouping["job"],
                details=grouping,
                now=_now(),
            )

    await run_in_threadpool(audit)
    return JSONResponse({"deleted": grouping}, status_code=202)


router.include_router(admin)
router.include_router(pings)
router.include_router(live)
router.include_router(push)
