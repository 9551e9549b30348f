"""Error routes: own ingest, Sentry-compatible envelope/store ingest, Read API, group actions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from monitoring_core.accounts import ApiKey
from monitoring_core.api.app import DB_UNAVAILABLE_ERRORS
from monitoring_core.api.body import (
    MAX_DEPTH,
    may_nest_too_deep,
    parse_json_items,
    read_body,
    read_raw_body,
    too_deep,
)
from monitoring_core.api.deps import (
    INGEST_SCOPES,
    check_key,
    count_points,
    require_admin,
    require_ingest,
    require_read,
    sentry_key,
)
from monitoring_core.api.params import Id, Text
from monitoring_core.api.routes_ingest import app_cache, partition_days
from monitoring_core.api.routes_otlp import store_sentry_logs, store_sentry_transactions
from monitoring_core.audit import key_actor
from monitoring_core.errors.batcher import GroupCommit
from monitoring_core.errors.correlation import related_events
from monitoring_core.errors.envelope import (
    BodyTooLarge,
    DecodedBody,
    Envelope,
    EnvelopeError,
    EnvelopeItem,
    UnsupportedEncoding,
    decompress,
    envelope_header,
    parse_envelope,
)
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.queries import error_analytics, group_detail, list_groups
from monitoring_core.errors.scrub import Scrubber
from monitoring_core.errors.search import SearchError, parse_search
from monitoring_core.errors.sentry import event_to_error
from monitoring_core.errors.service import change_group_status
from monitoring_core.errors.severity import IncidentPolicy
from monitoring_core.errors.store import PreparedError
from monitoring_core.errors.validate import parse_error_items
from monitoring_core.flows.error_ingest import (
    IngestResult,
    ingest_errors,
    load_incident_policy,
    load_scrubber,
    prepare,
    store_prepared,
)
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.timerange import TimeRange, parse_time_range, pick_interval

__all__ = ["LEAN_ROUTES", "router"]

router = APIRouter(tags=["errors"])
_TEXT_OR_JSON = {"", "application/json", "text/plain"}


# ---------------------------------------------------------------- ingest
SMALL_BATCH = 50  # requests up to this many events share transactions (group commit)
SCRUBBER_TTL_S = 30.0  # a change of the scrub fields or incident policy applies within this
# Requests of up to this many events are prepared on the event loop, not in the thread pool:
# an SDK's one event takes ~0.2 ms to scrub, fingerprint and classify, and handing it to a
# thread and back cost as much again (a queue, a wake-up and two GIL hand-overs), and more
# on a busy machine. The event loop is held at most ~1 ms; the database waits of the group
# commit's thread still overlap this work.
INLINE_EVENTS = 4


def _error_settings(app: FastAPI, conn: Connection) -> tuple[Scrubber, IncidentPolicy]:
    """The configured Scrubber and incident policy, read from settings at most every
    SCRUBBER_TTL_S seconds (not once per batch: a round trip and a parse saved per write)."""
    cached: list[Any] = app_cache(app, "error_settings", lambda: [None, None, 0.0])
    if cached[0] is None or cached[2] <= time.monotonic():
        cached[:] = [
            load_scrubber(conn),
            load_incident_policy(conn),
            time.monotonic() + SCRUBBER_TTL_S,
        ]
    return cached[0], cached[1]


def _store(app: FastAPI, events: list[ErrorInput], now: datetime) -> IngestResult:
    partition_days(app).ensure("error_events", {e.time.astimezone(UTC).date() for e in events})
    with app.state.engine.begin() as conn:
        scrubber, policy = _error_settings(app, conn)
        return ingest_errors(
            conn,
            events,
            now=now,
            tz=app.state.live.calendar,
            scrubber=scrubber,
            incident_policy=policy,
        )


def _cached_scrubber(app: FastAPI) -> Scrubber | None:
    """The configured Scrubber while its settings are fresh (None: read them first)."""
    cached: list[Any] | None = app.state.caches.get("error_settings")
    if cached is None or cached[0] is None or cached[2] <= time.monotonic():
        return None
    scrubber: Scrubber = cached[0]
    return scrubber


def _prepare(app: FastAPI, events: list[ErrorInput]) -> list[PreparedError]:
    """Scrub, fingerprint and classify one request's events, outside the group commit: this
    CPU work then overlaps the previous batch's database round trips instead of adding to
    them (the writer is one batch at a time)."""
    scrubber = _cached_scrubber(app)
    if scrubber is None:
        with app.state.engine.connect() as conn:
            scrubber, _ = _error_settings(app, conn)
    tz = app.state.live.calendar
    return [prepare(e, scrubber=scrubber, tz=tz) for e in events]


class _WriterConnection:
    """The group commit's database connection, kept from one batch to the next while
    requests keep coming (the batches are written one at a time): a pool check-out per batch
    cost a pre-ping round trip, one of eight per batch. `release` (on the event loop, when the
    queue has run dry; closing an idle connection does no I/O) gives it back to the pool, so
    the next check-out pings it again and a restarted database is noticed as before; a failed
    batch gives it back at once."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._conn: Connection | None = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        if self._conn is None:
            self._conn = self._app.state.engine.connect()  # the app's engine of the moment
        conn = self._conn
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _store_prepared(
    app: FastAPI, prepared: list[PreparedError], writer: _WriterConnection
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    days = {p.event.time.astimezone(UTC).date() for p in prepared}
    partition_days(app).ensure("error_events", days)
    with writer.begin() as conn:
        _, policy = _error_settings(app, conn)
        result = store_prepared(
            conn, prepared, now=now, tz=app.state.live.calendar, incident_policy=policy
        )
    return result.items


def _group_commit(app: FastAPI) -> GroupCommit[PreparedError, dict[str, Any]]:
    def create() -> GroupCommit[PreparedError, dict[str, Any]]:
        writer = _WriterConnection(app)

        def write(prepared: list[PreparedError]) -> list[dict[str, Any]]:
            return _store_prepared(app, prepared, writer)

        # A database outage fails every waiting request at once; any other failure is
        # retried request by request, so one bad request never fails the others (GroupCommit).
        return GroupCommit(write, shared_errors=DB_UNAVAILABLE_ERRORS, on_idle=writer.release)

    return app_cache(app, "error_group_commit", create)


async def _write(request: Request, events: list[ErrorInput], now: datetime) -> list[dict[str, Any]]:
    """Store events: small requests through group commit, large ones in their own transaction."""
    if len(events) <= SMALL_BATCH:
        scrubber = _cached_scrubber(request.app)
        if scrubber is not None and len(events) <= INLINE_EVENTS:
            tz = request.app.state.live.calendar
            prepared = [prepare(e, scrubber=scrubber, tz=tz) for e in events]
        else:  # settings to read, or enough CPU work to hold up other requests
            prepared = await run_in_threadpool(_prepare, request.app, events)
        return await _group_commit(request.app).submit(prepared)
    return (await run_in_threadpool(_store, request.app, events, now)).items


def _stored(items: list[dict[str, Any]]) -> int:
    return sum(1 for item in items if not item.get("duplicate"))


def _check_json_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _TEXT_OR_JSON and not (media.startswith("application/") and "json" in media):
        raise HTTPException(415, f"unsupported content type {media!r}; send application/json")


@contextmanager
def _sentry_429() -> Iterator[None]:
    """A 429 from the key's limits, with the header a Sentry SDK reads: it drops events
    client-side until the time it names has passed."""
    try:
        yield
    except HTTPException as exc:
        if exc.status_code == 429:
            retry = (exc.headers or {}).get("Retry-After", "60")
            headers = {"Retry-After": retry, "X-Sentry-Rate-Limits": f"{retry}::key"}
            raise HTTPException(429, exc.detail, headers=headers) from None
        raise


async def _sentry_auth(request: Request, key: str | None) -> ApiKey:
    with _sentry_429():
        return await check_key(request, key, INGEST_SCOPES)


def _count_sentry_items(request: Request, items: int) -> None:
    """Spend the key's point allowance on what the request carries (error events, transactions,
    log items) before anything is stored, like every other ingest route."""
    with _sentry_429():
        count_points(request, items)


@contextmanager
def _body_errors() -> Iterator[None]:
    """Decoding and envelope errors as 413, 415 and 400."""
    try:
        yield
    except BodyTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except UnsupportedEncoding as exc:
        raise HTTPException(415, str(exc)) from None
    except EnvelopeError as exc:
        raise HTTPException(400, str(exc)) from None


async def _sentry_body(request: Request) -> bytes:
    max_bytes = request.app.state.settings.max_body_bytes
    raw = await read_raw_body(request, max_bytes=max_bytes)
    with _body_errors():
        return decompress(raw, request.headers.get("content-encoding", ""), max_bytes=max_bytes)


async def _dsn_authenticated_body(request: Request) -> bytes:
    """The decoded body of an envelope whose key is only in its header's `dsn`: the body is
    decompressed just far enough to read that first line, the key is checked, and only then
    is the rest decompressed (a request with a wrong key costs a few KB of inflating, whatever
    it announces or a compression bomb would expand to)."""
    max_bytes = request.app.state.settings.max_body_bytes
    raw = await read_raw_body(request, max_bytes=max_bytes)
    encoding = request.headers.get("content-encoding", "")
    with _body_errors():
        body = DecodedBody(raw, encoding, max_bytes=max_bytes)
        dsn = envelope_header(body.first_line()).get("dsn")
    await _sentry_auth(request, (urlsplit(dsn).username or None) if isinstance(dsn, str) else None)
    with _body_errors():
        return body.read_all()


def _envelope_events(envelope: Envelope, project_id: str, now: datetime) -> list[ErrorInput]:
    """`event` items as ErrorInputs; transactions, sessions, reports … are skipped."""
    fallback = envelope.headers.get("event_id")
    try:
        return [
            _storable(
                event_to_error(item.json(), project_id=project_id, now=now, fallback_id=fallback),
                item.payload,
            )
            for item in envelope.items
            if item.type == "event"
        ]
    except EnvelopeError as exc:
        raise HTTPException(400, str(exc)) from None


_ESCAPED_NUL = b"\\u0000"


def _storable(event: ErrorInput, payload: bytes) -> ErrorInput:
    """The event with NUL characters (which Postgres cannot store) replaced by U+FFFD; 422
    when it nests deeper than body.MAX_DEPTH (SDKs trim data at depth 5; such an event is
    forged, and could not be written back as JSON past 254 levels).

    NUL is cleaned rather than refused: a Sentry SDK drops an event answered with an error.
    Only a payload that spells a NUL, or has enough brackets to nest that deep, is walked.
    """
    if _ESCAPED_NUL in payload:
        for name, value in vars(event).items():
            setattr(event, name, _without_nul(value))
    if may_nest_too_deep(payload) and any(too_deep(v) for v in vars(event).values()):
        message = f"is nested deeper than {MAX_DEPTH} levels"
        raise InvalidItems([ItemError(None, "event", message)])
    return event


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


async def _ingest_sentry(request: Request, events: list[ErrorInput], now: datetime) -> None:
    if events:
        items = await _write(request, events, now)
        request.app.state.stats.count_items("sentry_errors", accepted=_stored(items))


async def _envelope(request: Request, project_id: str) -> Response:
    key = sentry_key(request)
    if key:
        await _sentry_auth(request, key)  # refuse before reading a large body
        data = await _sentry_body(request)
    else:  # the key is in the envelope header: checked before the rest is decompressed
        data = await _dsn_authenticated_body(request)
    try:
        envelope = parse_envelope(data)
    except EnvelopeError as exc:
        raise HTTPException(400, str(exc)) from None
    now = datetime.now(UTC)
    events = _envelope_events(envelope, project_id, now)
    others = sum(1 for item in envelope.items if item.type in ("transaction", "log"))
    _count_sentry_items(request, len(events) + others)
    await _ingest_sentry(request, events, now)
    await store_sentry_transactions(request, envelope.items, project_id)  # spans (#14)
    await store_sentry_logs(request, envelope.items, project_id)  # log records (#14)
    return _json({"id": envelope.headers.get("event_id")})


async def _store_event(request: Request, project_id: str) -> Response:
    await _sentry_auth(request, sentry_key(request))
    raw = await _sentry_body(request)
    try:
        payload = EnvelopeItem({"type": "event"}, raw).json()
    except EnvelopeError as exc:
        raise HTTPException(400, str(exc)) from None
    now = datetime.now(UTC)
    error = _storable(event_to_error(payload, project_id=project_id, now=now), raw)
    _count_sentry_items(request, 1)
    await _ingest_sentry(request, [error], now)
    return _json({"id": error.event_id.hex})


def _json(content: dict[str, Any]) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def _add_lean_route(path: str, handle: Callable[[Request, str], Awaitable[Response]]) -> None:
    async def endpoint(request: Request) -> Response:
        # The route label the API's own metrics read (FastAPI sets it for its own routes).
        request.scope["route"] = route
        return await handle(request, request.path_params["project_id"])

    route = Route(path, endpoint, methods=["POST"], include_in_schema=False)
    LEAN_ROUTES.append(route)


# An SDK sends one event per request, so per-request framework cost is what limits this
# ingest: these plain Starlette routes skip FastAPI's endpoint machinery (path-parameter
# validation, dependency solving: ~75 of ~300 µs of route CPU per request, measured), and
# create_app puts them first in the application's own route list, ahead of FastAPI's walk
# through the included routers (which matched every route of the routers before this one,
# twice per request). Same handlers, auth, limits and error mapping (HTTPException and the
# database-unavailable handlers are application-wide). The FastAPI routes below are the same
# handlers, kept so that /docs and /openapi.json describe these paths (and serve them if an
# application includes this router without LEAN_ROUTES).
LEAN_ROUTES: list[Route] = []
for _path in ("/api/{project_id}/envelope/", "/api/{project_id}/envelope"):
    _add_lean_route(_path, _envelope)
for _path in ("/api/{project_id}/store/", "/api/{project_id}/store"):
    _add_lean_route(_path, _store_event)


@router.post("/api/{project_id}/envelope/", summary="Sentry SDK envelope ingest")
async def sentry_envelope(project_id: str, request: Request) -> Response:
    """What `sentry_sdk.init(dsn="http://KEY@HOST:8000/1")` sends; errors are stored, other
    item types (transactions, sessions, client reports, attachments …) are skipped. Key from
    `X-Sentry-Auth: Sentry sentry_key=KEY`, `?sentry_key=` or the envelope's `dsn` header;
    gzip, deflate or br bodies; 200 `{"id"}` once stored, 429 with `X-Sentry-Rate-Limits`."""
    return await _envelope(request, project_id)


@router.post("/api/{project_id}/store/", summary="Sentry legacy store ingest")
async def sentry_store(project_id: str, request: Request) -> Response:
    """The legacy endpoint: the body is one event JSON."""
    return await _store_event(request, project_id)


@router.post(
    "/api/monitoring/errors",
    status_code=202,
    summary="Ingest error events",
    dependencies=[Depends(require_ingest)],
)
async def ingest_error_events(request: Request) -> JSONResponse:
    """`{error_type, message, service_name, level, …}` or an array; per item the reply gives
    `error_id`, `group_id`, `severity` and `incident_id` when one was opened."""
    _check_json_type(request)
    data = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    items = parse_json_items(data)
    count_points(request, len(items))
    stats = request.app.state.stats
    now = datetime.now(UTC)
    try:
        # A large batch is checked in the thread pool: the event loop keeps serving meanwhile.
        events = (
            parse_error_items(items, now=now)
            if len(items) <= SMALL_BATCH
            else await run_in_threadpool(parse_error_items, items, now=now)
        )
    except InvalidItems:
        stats.count_items("errors", rejected=len(items))
        raise
    items_out = await _write(request, events, now)
    stats.count_items("errors", accepted=_stored(items_out))
    reply: dict[str, Any] = {"accepted": _stored(items_out), "items": items_out}
    if data.lstrip()[:1] == b"{":  # one object in, its fields at the top level too
        reply |= items_out[0]
    return JSONResponse(reply, status_code=202)


# ---------------------------------------------------------------- Read API
def _range(time_range: str | None, start: str | None, end: str | None) -> TimeRange:
    try:
        return parse_time_range(time_range, now=datetime.now(UTC), start=start, end=end)
    except ValueError as exc:
        detail = [{"index": None, "field": "timeRange", "message": str(exc)}]
        raise HTTPException(422, detail) from None


def _bad_query(field: str, exc: Exception) -> HTTPException:
    return HTTPException(422, [{"index": None, "field": field, "message": str(exc)}])


@router.get("/api/monitoring/errors", dependencies=[Depends(require_read)])
def errors_analytics(
    request: Request,
    time_range: str | None = Query(None, alias="timeRange"),
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    severity: str | None = None,
    group_by: str = Query("service", alias="groupBy"),
) -> dict[str, Any]:
    """Totals, breakdown by service|level|severity|error_type|group_id and its trend."""
    tr = _range(time_range, start, end)
    with request.app.state.read.connect() as conn:
        try:
            return error_analytics(
                conn,
                start=tr.start,
                end=tr.end,
                interval=pick_interval(tr),
                group_by=group_by,
                severity=severity,
            )
        except ValueError as exc:
            raise _bad_query("groupBy", exc) from None


@router.get("/api/monitoring/errors/groups", dependencies=[Depends(require_read)])
def errors_groups(
    request: Request,
    time_range: str | None = Query(None, alias="timeRange"),
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    status: str | None = None,
    service: str | None = None,
    level: str | None = None,
    severity: str | None = None,
    sort: str = "last_seen",
    limit: int = Query(100, ge=1, le=1000),
    q: Annotated[Text | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """Groups seen in the range, filterable and sortable; `q` is the Errors page's search
    (words in the type or message, `is:regressed`, `type:TimeoutError`, `tag:value`,
    `!tag:value`, `assigned:NAME`, quotes for spaces)."""
    tr = _range(time_range, start, end)
    try:
        search = parse_search(q) if q else None
    except SearchError as exc:
        raise _bad_query("q", exc) from None
    with request.app.state.read.connect() as conn:
        try:
            groups = list_groups(
                conn,
                start=tr.start,
                end=tr.end,
                status=status,
                service=service,
                level=level,
                severity=severity,
                sort=sort,
                limit=limit,
                search=search,
            )
        except ValueError as exc:
            raise _bad_query("status" if "status" in str(exc) else "sort", exc) from None
    return {"from": tr.start, "to": tr.end, "q": q or "", "groups": groups}


@router.get("/api/monitoring/errors/groups/{group_id}", dependencies=[Depends(require_read)])
def errors_group(
    request: Request,
    group_id: Id,
    time_range: str | None = Query("7d", alias="timeRange"),
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
) -> dict[str, Any]:
    """One group: latest event with its scrubbed stack trace, occurrences, tags, related."""
    tr = _range(time_range, start, end)
    with request.app.state.read.connect() as conn:
        detail = group_detail(conn, group_id=group_id, start=tr.start, end=tr.end)
    if detail is None:
        raise HTTPException(404, f"no error group {group_id}")
    return detail


@router.post("/api/monitoring/errors/correlate", dependencies=[Depends(require_read)])
def errors_correlate(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """`{errorId}` → the event and the errors sharing its trace_id or request_id."""
    raw = body.get("errorId", body.get("error_id"))
    try:
        event_id = uuid.UUID(str(raw))
    except ValueError:
        detail = [{"index": None, "field": "errorId", "message": "must be an error id (UUID)"}]
        raise HTTPException(422, detail) from None
    with request.app.state.read.connect() as conn:
        try:
            return related_events(conn, event_id=event_id)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None


@router.post("/api/admin/errors/groups/{group_id}/{action}")
def errors_group_action(
    request: Request,
    group_id: Id,
    action: str,
    key: Annotated[ApiKey, Depends(require_admin)],
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    """resolve (optionally `{"release": "app@1.4.0"}`: the release the fix ships in), ignore,
    reopen."""
    release = (body or {}).get("release")
    with request.app.state.engine.begin() as conn:
        try:
            return change_group_status(
                conn,
                group_id=group_id,
                action=action,
                actor=key_actor(key.name),
                now=datetime.now(UTC),
                release=str(release) if release else None,
            )
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(409 if "cannot" in str(exc) else 422, str(exc)) from None
