"""Per-key request and point rates: token buckets, a pure decision taking `now` (monotonic s).

Every key has two allowances per minute: requests (every authenticated route) and points
(items an ingest route is about to store: metric points, timings, Web Vitals, error events,
business events, Pushgateway samples …). A key's own `rate_limit_per_minute` /
`points_per_minute` wins; NULL means the configured default (`MONITORING_KEY_REQUESTS_PER_MINUTE`,
`MONITORING_KEY_POINTS_PER_MINUTE`), 0 means unlimited (`effective_limit`).

A bucket holds one minute's allowance and refills continuously. A request that carries more
points than a whole minute's allowance is admitted when the bucket is full and leaves it in
debt, so the key's average stays at its rate and no request is refused for ever.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["RateLimiter", "TokenBucket", "effective_limit"]

Kind = Literal["requests", "points"]


def effective_limit(own: int | None, default: int) -> int | None:
    """The per-minute limit that applies: the key's own, else the default; None when unlimited."""
    limit = default if own is None else own
    return limit if limit > 0 else None


@dataclass
class TokenBucket:
    """Holds up to one minute's allowance and refills continuously."""

    per_minute: int
    tokens: float
    updated: float

    def take(self, now: float, amount: int = 1) -> float | None:
        """Spend `amount` tokens; None when allowed, else the seconds until it would be."""
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = max(self.updated, now)
        need = float(min(amount, self.per_minute))  # more than a minute's worth: a full bucket
        if self.tokens >= need:
            self.tokens -= amount  # may go negative (debt) for an oversized request
            return None
        return (need - self.tokens) / rate


class RateLimiter:
    """Token buckets by (kind, key id); a limit of None is never limited."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[Kind, int], TokenBucket] = {}
        self._lock = threading.Lock()
        # Spent here since the last `drain` (for sharing use with other API processes).
        self._spent: dict[tuple[Kind, int], int] = {}

    def drain(self) -> dict[tuple[Kind, int], int]:
        """What this process spent per (kind, key id) since the last call, for every bucket it
        holds (0 where nothing was spent); the counters restart at zero."""
        with self._lock:
            spent = {bucket: self._spent.get(bucket, 0) for bucket in self._buckets}
            self._spent = {}
        return spent

    def note_spent(self, kind: Kind, key_id: int, amount: int) -> None:
        """Count `amount` as spent here again (a sync that failed hands its use back)."""
        with self._lock:
            self._spent[(kind, key_id)] = self._spent.get((kind, key_id), 0) + amount

    def charge(self, kind: Kind, key_id: int, amount: int, now: float) -> None:
        """Take `amount` tokens other processes spent from this process's bucket (its debt is
        capped at one minute's allowance, so a burst elsewhere never blocks a key for long)."""
        with self._lock:
            bucket = self._buckets.get((kind, key_id))
            if bucket is None or amount <= 0:
                return
            bucket.take(now, 0)  # refill up to now first
            bucket.tokens = max(bucket.tokens - amount, -float(bucket.per_minute))

    def check(
        self,
        key_id: int,
        per_minute: int | None,
        now: float,
        *,
        kind: Kind = "requests",
        amount: int = 1,
    ) -> int | None:
        """None when the request may go on, else Retry-After in whole seconds (>= 1)."""
        if per_minute is None or amount <= 0:
            return None
        with self._lock:
            bucket = self._buckets.get((kind, key_id))
            if bucket is None or bucket.per_minute != per_minute:
                bucket = TokenBucket(per_minute, float(per_minute), now)
                self._buckets[(kind, key_id)] = bucket
            wait = bucket.take(now, amount)
            if wait is None:
                self._spent[(kind, key_id)] = self._spent.get((kind, key_id), 0) + amount
        return None if wait is None else max(1, math.ceil(wait))
