"""API key lookups with a short in-process cache (ingest must not cost a query per request)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, func, update

from monitoring_core.accounts import ApiKey, hash_api_key, lookup_api_key
from monitoring_core.schema import api_keys

__all__ = ["KeyCache"]

# A revoked key stops working after at most this many seconds.
DEFAULT_TTL_S = 5.0
_MAX_ENTRIES = 10_000


class KeyCache:
    """Maps presented keys (by hash) to their record, or None for unknown keys, for `ttl` s."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[ApiKey | None, float]] = {}
        self._lock = threading.Lock()
        self._flights: dict[str, threading.Lock] = {}  # key hash -> the lookup in progress

    def cached(self, key: str) -> tuple[bool, ApiKey | None]:
        """(hit, record) without touching the database."""
        entry = self._entries.get(hash_api_key(key))
        if entry is None or entry[1] <= self._clock():
            return False, None
        return True, entry[0]

    def forget(self, key_id: int) -> None:
        """Drop a key's cached record (after revoking or changing it through this process)."""
        with self._lock:
            for hashed, (record, _) in list(self._entries.items()):
                if record is not None and record.id == key_id:
                    del self._entries[hashed]

    def lookup(self, key: str) -> ApiKey | None:
        """The key's record, from the cache or the database (raises on DB errors)."""
        hit, record = self.cached(key)
        if hit:
            return record
        hashed = hash_api_key(key)
        # One lookup per key at a time: when a busy key's entry expires, every request in
        # flight misses at once (32 Sentry senders: 32 reads and updates of one row every TTL);
        # the others wait for the first and take its answer from the cache.
        with self._lock:
            flight = self._flights.setdefault(hashed, threading.Lock())
        try:
            with flight:
                hit, record = self.cached(key)
                if hit:
                    return record
                record = self._read(key)
                with self._lock:
                    if len(self._entries) >= _MAX_ENTRIES:
                        self._entries.clear()  # a flood of random keys must not grow memory
                    self._entries[hashed] = (record, self._clock() + self.ttl)
                return record
        finally:
            with self._lock:
                self._flights.pop(hashed, None)

    def _read(self, key: str) -> ApiKey | None:
        with self._engine.begin() as conn:
            record = lookup_api_key(conn, key)
            if record is not None:
                # At most once per key and TTL: enough for "last used" in the admin UI.
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == record.id)
                    .values(last_used_at=func.now())
                )
        return record
