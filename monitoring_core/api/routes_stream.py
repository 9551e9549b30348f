"""`GET /api/monitoring/live/stream` (also at `/api/monitoring/stream`): Server-Sent Events of alert state changes, incident timeline
entries, notification deliveries, health check flips and new/regressed/resolved error groups
(scope read or admin).

One poller per API process reads the tables after its cursor (`flows.live_feed`) every
POLL_S seconds and fans the events out to every connected client: the database sees one
query set per process per second however many clients listen, and any process can serve any
client (the cursor lives in the tables). Each event's `id` is the cursor after it, so a client
reconnecting with `Last-Event-ID` gets what it missed (at most CATCH_UP events per table)
before the live events. A comment line every KEEPALIVE_S keeps proxies from closing the
connection. A client that falls QUEUE_MAX events behind is disconnected (it may resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.deps import require_read
from monitoring_core.flows.live_feed import Cursor, LiveEvent, events_after, latest_cursor

__all__ = ["LiveHub", "router"]

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"], dependencies=[Depends(require_read)])
POLL_S = 1.0
KEEPALIVE_S = 15.0
QUEUE_MAX = 1000
CATCH_UP = 1000


class LiveHub:
    """The process's poller and its subscribers' queues."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.cursor: Cursor | None = None
        self.queues: set[asyncio.Queue[LiveEvent | None]] = set()
        self.task: asyncio.Task[None] | None = None

    async def subscribe(self) -> tuple[asyncio.Queue[LiveEvent | None], Cursor]:
        """A queue of live events and the cursor they start after."""
        if self.cursor is None or self.task is None or self.task.done():
            # nobody was listening, so the poller stopped: start from what is there now
            self.cursor = await run_in_threadpool(self._latest)
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(QUEUE_MAX)
        self.queues.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._poll())
        return queue, self.cursor

    def unsubscribe(self, queue: asyncio.Queue[LiveEvent | None]) -> None:
        self.queues.discard(queue)

    def _latest(self) -> Cursor:
        with self.engine.connect() as conn:
            return latest_cursor(conn)

    def read(self, cursor: Cursor) -> tuple[list[LiveEvent], Cursor]:
        with self.engine.connect() as conn:
            return events_after(conn, cursor, limit=QUEUE_MAX)

    async def _poll(self) -> None:
        """Until the last subscriber leaves: read, fan out, sleep."""
        while self.queues:
            try:
                assert self.cursor is not None
                events, self.cursor = await run_in_threadpool(self.read, self.cursor)
            except Exception:  # the database restarting must not end the stream
                log.warning("live stream poll failed", exc_info=True)
                events = []
            for queue in list(self.queues):
                for event in events:
                    try:
                        queue.put_nowait(event)
                    except asyncio.QueueFull:  # too slow: end its stream, it may resume
                        self.queues.discard(queue)
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()
                        queue.put_nowait(None)
                        break
            await asyncio.sleep(POLL_S)


def _hub(request: Request) -> LiveHub:
    hub = getattr(request.app.state, "live_hub", None)
    if hub is None or hub.engine is not request.app.state.engine:
        hub = request.app.state.live_hub = LiveHub(request.app.state.engine)
    return hub


def _frame(event: LiveEvent, cursor: Cursor) -> str:
    return f"id: {cursor.text()}\nevent: {event.name}\ndata: {event.payload()}\n\n"


async def _events(request: Request, hub: LiveHub, resume: Cursor | None) -> AsyncIterator[str]:
    queue, cursor = await hub.subscribe()
    try:
        yield f"retry: 2000\nid: {(resume or cursor).text()}\n\n"
        if resume is not None:  # what the client missed, then only what it has not seen
            missed, _ = await run_in_threadpool(hub.read, resume)
            cursor = resume
            for event in missed:
                cursor = cursor.after(event.kind, event.row_id)
                yield _frame(event, cursor)
        while not await request.is_disconnected():
            try:
                live = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if live is None:
                return
            if not cursor.seen(live.kind, live.row_id):
                cursor = cursor.after(live.kind, live.row_id)
                yield _frame(live, cursor)
    finally:
        hub.unsubscribe(queue)


@router.get("/api/monitoring/live/stream")
@router.get("/api/monitoring/stream", include_in_schema=False)  # the first path it had
async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events (`text/event-stream`); send `Last-Event-ID` to resume."""
    resume = None
    if header := request.headers.get("last-event-id"):
        try:
            resume = Cursor.parse(header)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
    return StreamingResponse(
        _events(request, _hub(request), resume),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
