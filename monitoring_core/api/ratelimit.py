"""Per-key token buckets: a pure decision taking `now` (monotonic seconds)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

__all__ = ["RateLimiter", "TokenBucket"]


@dataclass
class TokenBucket:
    """Holds up to one minute's allowance and refills continuously."""

    per_minute: int
    tokens: float
    updated: float

    def take(self, now: float) -> float | None:
        """Spend one token; None when allowed, else the seconds until one is available."""
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """Token buckets by key id; a key without a limit (None) is never limited."""

    def __init__(self) -> None:
        self._buckets: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key_id: int, per_minute: int | None, now: float) -> int | None:
        """None when the request may go on, else Retry-After in whole seconds (>= 1)."""
        if per_minute is None:
            return None
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None or bucket.per_minute != per_minute:
                bucket = TokenBucket(per_minute, float(per_minute), now)
                self._buckets[key_id] = bucket
            wait = bucket.take(now)
        return None if wait is None else max(1, math.ceil(wait))
