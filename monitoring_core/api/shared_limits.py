"""Per-key limits that hold across API processes and hosts: use shared through Postgres.

Each process decides on its own token buckets (`ratelimit.RateLimiter`, no round trip per
request). Once a second a background thread adds what this process spent per key and kind to
`key_usage.total` (a monotonic counter per key) in one statement and reads the new totals back;
what the totals grew by beyond this process's own share was spent by the others, and is taken
from this process's buckets (`RateLimiter.charge`). So every process's bucket reflects every
process's use, one sync interval late.

Bounded error: between two syncs each of N processes may admit up to what its bucket holds,
so a key can exceed its per-minute rate by at most (N - 1) x rate x SYNC_S / 60 extra in a
burst (with N = 2 and 1 s syncs: 1/60 of a minute's allowance), plus one bucket's burst per
process when the key first arrives at a process that has not seen it yet. Over a minute the
key's average stays at its rate. A database that is down stops the sharing (each process then
enforces its own buckets alone) and never fails a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from monitoring_core.api.ratelimit import Kind, RateLimiter

__all__ = ["SYNC_S", "UsageSync"]

log = logging.getLogger(__name__)
SYNC_S = 1.0

_ADD = text(
    """
    INSERT INTO key_usage (kind, key_id, total, updated_at)
    SELECT kind, key_id, spent, now()
    FROM unnest(CAST(:kinds AS text[]), CAST(:keys AS bigint[]), CAST(:spent AS bigint[]))
        AS m(kind, key_id, spent)
    ON CONFLICT (kind, key_id) DO UPDATE
        SET total = key_usage.total + EXCLUDED.total, updated_at = now()
    RETURNING kind, key_id, total
    """
)

_READ = text(
    """
    SELECT u.kind, u.key_id, u.total FROM key_usage u
    JOIN unnest(CAST(:kinds AS text[]), CAST(:keys AS bigint[])) AS m(kind, key_id)
      ON u.kind = m.kind AND u.key_id = m.key_id
    """
)


class UsageSync:
    """Shares one process's per-key use with the others (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        limiter: RateLimiter,
        *,
        interval_s: float = SYNC_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.limiter, self.interval_s = engine, limiter, interval_s
        self._monotonic = monotonic
        self._seen: dict[tuple[Kind, int], int] = {}  # the totals after our last sync
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the background sync once (idempotent; called on the first limited request)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="usage-sync", daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the sync and wait for a sync under way to end (its transaction with it)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except Exception:  # never let sharing break the API; each process limits alone
                if not failing:  # once per outage, not once a second
                    log.warning("per-key usage sync failing; limits are per process meanwhile",
                                exc_info=True)  # fmt: skip
                failing = True
            else:
                if failing:
                    log.warning("per-key usage sync working again")
                failing = False

    def sync_once(self) -> int:
        """Add our use, read the totals, charge the others' use to our buckets; the number of
        tokens charged."""
        spent = self.limiter.drain()
        if not spent:
            return 0
        # Only keys used here are written; the others' totals are just read (an idle process
        # writes nothing).
        used = sorted((bucket, n) for bucket, n in spent.items() if n)
        idle = sorted(bucket for bucket, n in spent.items() if not n)
        try:
            with self.engine.begin() as conn:
                rows: list[Any] = []
                if used:
                    params = {
                        "kinds": [kind for (kind, _key), _n in used],
                        "keys": [key for (_kind, key), _n in used],
                        "spent": [n for _bucket, n in used],
                    }
                    rows += list(conn.execute(_ADD, params))
                if idle:
                    params = {"kinds": [k for k, _ in idle], "keys": [key for _, key in idle]}
                    rows += list(conn.execute(_READ, params))
        except Exception:
            self._give_back(spent)
            raise
        now, charged = self._monotonic(), 0
        for kind, key_id, total in rows:
            bucket = (kind, int(key_id))
            before = self._seen.get(bucket)
            self._seen[bucket] = int(total)
            if before is None:  # first sight: the others' past use is not ours to charge
                continue
            others = int(total) - before - spent.get(bucket, 0)
            if others > 0:
                self.limiter.charge(kind, int(key_id), others, now)
                charged += others
        return charged

    def _give_back(self, spent: dict[tuple[Kind, int], int]) -> None:
        """A failed sync: keep the use for the next one (nothing is lost or counted twice)."""
        for (kind, key_id), amount in spent.items():
            if amount:
                self.limiter.note_spent(kind, key_id, amount)
