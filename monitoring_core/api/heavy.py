"""A cap on heavy requests in flight, so memory stays bounded under any request mix.

A large push is parsed and written in memory: 32 concurrent 10,000-sample Pushgateway pushes
took the API past 2 GB RSS. Requests whose body may be large (declared over a threshold,
compressed, or of unknown length) each take a slot before their body is read; at most
`slots` are in flight, the others wait in line, and one that waited `wait_s` is answered
503 with Retry-After. Small requests never wait.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import HTTPException, Request

__all__ = ["HeavyGate", "may_be_heavy", "release_free_memory"]

try:  # glibc: give freed heap pages back to the system after a large request
    _malloc_trim: Any = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # another libc: nothing to do
    _malloc_trim = None


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (glibc `malloc_trim`; ~1 ms).

    A large push frees tens of MB in whichever thread-pool thread ran it; without this the
    freed pages of each thread's heap stay counted in the process's RSS."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def may_be_heavy(request: Request, threshold: int) -> bool:
    """Whether the body may exceed `threshold` bytes once read (and decompressed)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        return True
    declared = request.headers.get("content-length", "")
    return not (declared.isascii() and declared.isdigit() and int(declared) <= threshold)


class HeavyGate:
    """At most `slots` heavy requests at once; a request that waits `wait_s` gets 503."""

    def __init__(self, slots: int, wait_s: float, retry_after_s: int = 5) -> None:
        self.slots, self.wait_s, self.retry_after_s = slots, wait_s, retry_after_s
        self._semaphore: asyncio.Semaphore | None = None
        self.waiting = 0

    @asynccontextmanager
    async def slot(self, what: str) -> AsyncIterator[None]:
        if self._semaphore is None:  # created on the serving event loop
            self._semaphore = asyncio.Semaphore(self.slots)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._semaphore.acquire(), self.wait_s)
        except TimeoutError:
            raise HTTPException(
                503,
                f"too many large {what} at once ({self.slots} in flight); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            ) from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._semaphore.release()
