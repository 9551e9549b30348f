"""Group commit for small ingest requests: many one-event requests, one transaction.

A Sentry SDK sends one event per request. Writing each in its own transaction costs a commit
(a WAL flush) and a handful of round trips per event. Instead, requests that arrive while a
write is running wait together and go in the next write; every request still gets its reply
only after the transaction holding its events has committed. With no load, a request is
written at once (no added delay); under load, batches grow by themselves.

Each request still succeeds or fails on its own: when a shared write fails, its requests are
written again one by one, so one request whose events the database refuses (a value it
cannot store, a bug in one event's path) fails alone instead of failing every client that
happened to share its transaction. Errors listed in `shared_errors` (the database being
unreachable) concern every request alike and are handed to all without a retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`await submit(items)` returns `write(all items of the batch)`'s results for `items`.

    `write` runs in the thread pool, one batch at a time per instance (per event loop), and
    returns one result per item in order. An exception fails only the requests whose own
    write fails (see the module docstring).
    """

    def __init__(
        self,
        write: Callable[[list[T]], Sequence[R]],
        *,
        max_items: int = 2000,
        shared_errors: tuple[type[Exception], ...] = (),
        on_idle: Callable[[], None] | None = None,
    ):
        self._write = write
        # Called on the event loop when the queue has run dry (no write is running then):
        # the writer may give back what it kept between back-to-back batches. Must not block.
        self._on_idle = on_idle
        self._max_items = max_items
        self._shared_errors = shared_errors
        self._pending: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: list[T]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[list[T], asyncio.Future[list[R]]]]:
        batch: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        count = 0
        while self._pending and (not batch or count + len(self._pending[0][0]) <= self._max_items):
            entry = self._pending.pop(0)
            batch.append(entry)
            count += len(entry[0])
        return batch

    async def _drain(self) -> None:
        while self._pending:
            batch = self._take()
            items = [item for entry in batch for item in entry[0]]
            try:
                results = await run_in_threadpool(self._write, items)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
                if len(batch) == 1 or isinstance(exc, self._shared_errors):
                    for _, future in batch:
                        _fail(future, exc)
                else:
                    await self._one_by_one(batch)
                continue
            start = 0
            for entry, future in batch:
                end = start + len(entry)
                if not future.done():  # the client may have gone away
                    future.set_result(list(results[start:end]))
                start = end
        if self._on_idle is not None:
            self._on_idle()

    async def _one_by_one(self, batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        """After a failed shared write: each request in its own write, failing on its own."""
        for items, future in batch:
            try:
                results = await run_in_threadpool(self._write, items)
            except Exception as exc:  # noqa: BLE001 - this request's own failure
                _fail(future, exc)
            else:
                if not future.done():
                    future.set_result(list(results))


def _fail(future: asyncio.Future[list[R]], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
