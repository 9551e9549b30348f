"""Per-key limits across API processes: two limiters (two processes) sharing use via Postgres.

The decisions take an explicit monotonic `now` (the syncs the same clock); syncs are called by
hand, so nothing sleeps.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import Engine, text

from monitoring_core.api.ratelimit import RateLimiter
from monitoring_core.api.shared_limits import UsageSync


def _key_id() -> int:
    return 10_000_000 + secrets.randbelow(10_000_000)  # a fresh counter row per test


def _allowed(limiter: RateLimiter, key: int, limit: int, now: float, n: int) -> int:
    return sum(limiter.check(key, limit, now) is None for _ in range(n))


def test_use_in_one_process_counts_in_the_other(session_engine: Engine) -> None:
    key, limit = _key_id(), 600  # 600 requests a minute
    a, b = RateLimiter(), RateLimiter()
    sync_a, sync_b = (UsageSync(session_engine, x, monotonic=lambda: 0.0) for x in (a, b))
    # Both processes have seen the key once (first sight takes no one else's past use).
    assert a.check(key, limit, 0.0) is None and b.check(key, limit, 0.0) is None
    sync_a.sync_once()
    sync_b.sync_once()
    # Process A serves 400 requests; after the next syncs B knows about them.
    assert _allowed(a, key, limit, 0.0, 400) == 400
    sync_a.sync_once()
    assert sync_b.sync_once() == 400
    # Without sharing B would admit 599 more; with it, about what is left of the minute.
    left = _allowed(b, key, limit, 0.0, 600)
    assert 195 <= left <= 200
    sync_b.sync_once()
    sync_a.sync_once()
    assert _allowed(a, key, limit, 0.0, 50) == 0  # and A now sees B's use too


def test_without_sharing_each_process_would_admit_the_whole_rate(session_engine: Engine) -> None:
    """The failure this module prevents (and that the test above would show without it)."""
    key, limit = _key_id(), 600
    a, b = RateLimiter(), RateLimiter()
    assert _allowed(a, key, limit, 0.0, 600) + _allowed(b, key, limit, 0.0, 600) == 1200


def test_points_are_shared_and_refill_with_time(session_engine: Engine) -> None:
    key, limit = _key_id(), 60_000  # 1,000 points a second
    a, b = RateLimiter(), RateLimiter()
    sync_a, sync_b = (UsageSync(session_engine, x, monotonic=lambda: 0.0) for x in (a, b))
    for limiter in (a, b):
        assert limiter.check(key, limit, 0.0, kind="points", amount=1) is None
    sync_a.sync_once()
    sync_b.sync_once()
    assert a.check(key, limit, 0.0, kind="points", amount=59_000) is None
    sync_a.sync_once()
    sync_b.sync_once()
    assert b.check(key, limit, 0.0, kind="points", amount=5_000) is not None  # spent by A
    assert b.check(key, limit, 10.0, kind="points", amount=5_000) is None  # 10 s later: refilled


def test_a_failed_sync_keeps_its_use_for_the_next(session_engine: Engine) -> None:
    from sqlalchemy import create_engine

    key, limit = _key_id(), 600
    a = RateLimiter()
    broken = UsageSync(create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none"), a)
    _allowed(a, key, limit, 0.0, 30)
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        broken.sync_once()
    assert a.drain()[("requests", key)] == 30  # handed back, not lost
    a.note_spent("requests", key, 30)
    UsageSync(session_engine, a).sync_once()
    with session_engine.connect() as conn:
        total = conn.execute(
            text("SELECT total FROM key_usage WHERE kind = 'requests' AND key_id = :k"), {"k": key}
        ).scalar_one()
    assert total == 30


def test_an_idle_process_reads_but_writes_nothing(session_engine: Engine) -> None:
    key, limit = _key_id(), 600
    a, b = RateLimiter(), RateLimiter()
    sync_a, sync_b = (UsageSync(session_engine, x, monotonic=lambda: 0.0) for x in (a, b))
    assert b.check(key, limit, 0.0) is None  # B holds a bucket for the key, then idles
    sync_b.sync_once()
    query = text("SELECT total, updated_at FROM key_usage WHERE kind = 'requests' AND key_id = :k")
    with session_engine.connect() as conn:
        before = conn.execute(query, {"k": key}).one()
    sync_b.sync_once()  # nothing spent: no write (a backup or a test sees no change)
    with session_engine.connect() as conn:
        assert conn.execute(query, {"k": key}).one() == before
    _allowed(a, key, limit, 0.0, 100)
    sync_a.sync_once()
    assert sync_b.sync_once() == 100  # yet the idle process still learns the others' use
