"""Alert rules split across live workers: disjoint shares, once per cycle, failover, families.

Every database test runs in one transaction that is rolled back, with the worker list it
writes itself, at the test instant (`now`), so other tests' workers never take part.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, text

from monitoring_core.alerts.store import list_rules
from monitoring_core.flows.alert_cycle import evaluate_all, shard_keys
from monitoring_core.sharding import LEASE, claim, cycle_number, live_workers, owners, split
from tests.alerting_support import threshold_rule

INTERVAL = 15.0


@pytest.fixture
def conn(session_engine: Engine) -> Iterator[Connection]:
    with session_engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text("DELETE FROM worker_heartbeats"))
        connection.execute(text("DELETE FROM shard_claims"))
        try:
            yield connection
        finally:
            transaction.rollback()


def _beat(conn: Connection, worker: str, at: datetime, *, stopping: bool = False) -> None:
    conn.execute(
        text(
            "INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, last_seen, status)"
            " VALUES (:w, 'host', 1, :at, :at, CAST(:status AS jsonb))"
            " ON CONFLICT (worker_id) DO UPDATE SET last_seen = :at, status = EXCLUDED.status"
        ),
        {"w": worker, "at": at, "status": '{"stopping": true}' if stopping else "{}"},
    )


def _cycle_start(now: datetime) -> datetime:
    """The first instant of the cycle `now` is in (so +k*INTERVAL lands k cycles later)."""
    return datetime.fromtimestamp(cycle_number(now, INTERVAL) * INTERVAL, tz=now.tzinfo)


KEYS = {item: str(item) for item in range(1, 301)}


def test_shares_are_disjoint_cover_everything_and_move_only_the_leavers_items() -> None:
    three = split(KEYS, ["a", "b", "c"])
    assert sorted(i for share in three.values() for i in share) == sorted(KEYS)
    assert all(60 <= len(share) <= 140 for share in three.values())  # roughly even
    two = split(KEYS, ["a", "b"])
    moved = {i for i in KEYS if (i in three["a"]) != (i in two["a"])}
    moved |= {i for i in KEYS if (i in three["b"]) != (i in two["b"])}
    assert moved == set(three["c"])  # only c's items found a new owner


def test_two_workers_claim_each_item_once_per_cycle(conn: Connection, now: datetime) -> None:
    at = _cycle_start(now)
    _beat(conn, "w1", at)
    _beat(conn, "w2", at)
    assert live_workers(conn, at) == ["w1", "w2"]
    first = claim(conn, kind="t", keys=KEYS, worker_id="w1", now=at, interval_s=INTERVAL)
    second = claim(conn, kind="t", keys=KEYS, worker_id="w2", now=at + timedelta(seconds=5), interval_s=INTERVAL)  # fmt: skip
    # In the first cycle nothing was claimed before, so w1 takes every orphan; w2 gets none.
    assert sorted(first) == sorted(KEYS) and second == []
    # The next cycle: each its own share, disjoint and complete.
    later = at + timedelta(seconds=INTERVAL)
    mine1 = claim(conn, kind="t", keys=KEYS, worker_id="w1", now=later, interval_s=INTERVAL)
    mine2 = claim(conn, kind="t", keys=KEYS, worker_id="w2", now=later, interval_s=INTERVAL)
    assert set(mine1).isdisjoint(mine2) and sorted(mine1 + mine2) == sorted(KEYS)
    assert mine1 and mine2
    again = claim(conn, kind="t", keys=KEYS, worker_id="w1", now=later, interval_s=INTERVAL)
    assert again == []  # never twice in one cycle
    assert {w for w, _n, _c in owners(conn, "t")} == {"w1", "w2"}


def test_own_share_first_then_orphans_no_worker_takes_all_at_a_start(
    conn: Connection, now: datetime
) -> None:
    """The alert cycle's order: each worker claims its own share, evaluates it, then claims
    the orphans still unclaimed. At a start (nothing claimed before) both live workers get
    their own share; orphans of a worker that is gone go to whoever asks after its share."""
    at = _cycle_start(now)
    _beat(conn, "w1", at)
    _beat(conn, "w2", at)
    args: dict[str, Any] = {"kind": "t", "keys": KEYS, "now": at, "interval_s": INTERVAL}
    own1 = claim(conn, worker_id="w1", own=True, orphans=False, **args)
    own2 = claim(conn, worker_id="w2", own=True, orphans=False, **args)
    assert own1 and own2 and set(own1).isdisjoint(own2)
    assert sorted(own1 + own2) == sorted(KEYS)
    assert claim(conn, worker_id="w1", own=False, orphans=True, **args) == []
    # w3 joins in the member list but never claims: after its share's cycle it is orphaned.
    later, last = at + timedelta(seconds=INTERVAL), at + timedelta(seconds=2 * INTERVAL)
    for moment in (later, last):
        for worker in ("w1", "w2", "w3"):
            _beat(conn, worker, moment)
        step = {**args, "now": moment}
        own1 = claim(conn, worker_id="w1", own=True, orphans=False, **step)
        own2 = claim(conn, worker_id="w2", own=True, orphans=False, **step)
        left = claim(conn, worker_id="w1", own=False, orphans=True, **step)
    assert left and sorted(own1 + own2 + left) == sorted(KEYS)  # w3's share, taken by w1


def test_a_dead_workers_share_is_taken_over_within_two_cycles(
    conn: Connection, now: datetime
) -> None:
    at = _cycle_start(now)
    _beat(conn, "w1", at)
    _beat(conn, "w2", at)
    claim(conn, kind="t", keys=KEYS, worker_id="w1", now=at, interval_s=INTERVAL)
    c1 = at + timedelta(seconds=INTERVAL)
    _beat(conn, "w1", c1)
    _beat(conn, "w2", c1)
    share2 = claim(conn, kind="t", keys=KEYS, worker_id="w2", now=c1, interval_s=INTERVAL)
    claim(conn, kind="t", keys=KEYS, worker_id="w1", now=c1, interval_s=INTERVAL)
    # w2 is killed right after cycle c1: no heartbeat, no claims. One cycle later its lease
    # has not run out yet, but its items were not claimed in c2 either...
    c2, c3 = c1 + timedelta(seconds=INTERVAL), c1 + timedelta(seconds=2 * INTERVAL)
    _beat(conn, "w1", c2)
    got2 = claim(conn, kind="t", keys=KEYS, worker_id="w1", now=c2, interval_s=INTERVAL)
    assert set(got2).isdisjoint(share2)  # w2's items were claimed in c1: not orphans yet
    _beat(conn, "w1", c3)
    assert c3 - c1 <= timedelta(seconds=30)  # the issue: moved within 30 s
    got3 = claim(conn, kind="t", keys=KEYS, worker_id="w1", now=c3, interval_s=INTERVAL)
    assert sorted(got3) == sorted(KEYS)  # ...so in c3 (30 s after the kill) w1 has them all


def test_a_worker_that_said_goodbye_is_not_a_member(conn: Connection, now: datetime) -> None:
    _beat(conn, "w1", now)
    _beat(conn, "w2", now, stopping=True)
    _beat(conn, "w3", now - LEASE - timedelta(seconds=1))
    assert live_workers(conn, now) == ["w1"]


def test_composite_families_share_one_key() -> None:
    rows = [
        {"id": 1, "condition_config": {"type": "threshold"}},
        {"id": 2, "condition_config": {"type": "threshold"}},
        {"id": 3, "condition_config": {"type": "composite", "rules": [1, 2]}},
        {"id": 4, "condition_config": {"type": "threshold"}},
        {"id": 5, "condition_config": {"type": "composite", "rules": [2, 4]}},
        {"id": 6, "condition_config": {"type": "threshold"}},
    ]
    keys = shard_keys(rows)
    assert {keys[i] for i in (1, 2, 3, 4, 5)} == {"1"} and keys[6] == "6"


def test_evaluate_all_evaluates_only_the_claimed_rules(conn: Connection, now: datetime) -> None:
    ids = [threshold_rule(conn, now, alert_name=f"shard {i}") for i in range(6)]
    rows = list_rules(conn, enabled_only=True)
    at = _cycle_start(now)
    _beat(conn, "w1", at)
    _beat(conn, "w2", at)
    keys = shard_keys(rows)
    claim(conn, kind="alert_rules", keys=keys, worker_id="w1", now=at, interval_s=INTERVAL)
    nxt = at + timedelta(seconds=INTERVAL)
    one = claim(conn, kind="alert_rules", keys=keys, worker_id="w1", now=nxt, interval_s=INTERVAL)
    two = claim(conn, kind="alert_rules", keys=keys, worker_id="w2", now=nxt, interval_s=INTERVAL)
    tz = ZoneInfo("Europe/London")
    r1 = evaluate_all(conn, now=nxt, tz=tz, public_url="http://x", only=frozenset(one))
    r2 = evaluate_all(conn, now=nxt, tz=tz, public_url="http://x", only=frozenset(two))
    assert set(one).isdisjoint(two) and set(ids) <= set(one) | set(two)
    assert r1.rules + r2.rules + len(r1.invalid) + len(r2.invalid) == len(rows)


def test_two_workers_never_run_one_due_collector_twice(
    session_engine: Engine, now: datetime
) -> None:
    """The configured-collectors job runs on every worker: each due collector is claimed by
    exactly one of two concurrent runs (FOR UPDATE SKIP LOCKED, last_run_at in the claim)."""
    import threading

    from monitoring_core.collectors.runner import run_configured_collectors
    from monitoring_core.collectors.store import save_collector

    with session_engine.begin() as c:
        ids = [
            save_collector(
                c,
                {"name": f"shard scrape {i}", "kind": "prometheus_scrape", "url": "http://127.0.0.1:9/metrics",
                 "interval_seconds": 60},
                collector_id=None, actor="system:test", now=now,
            )["id"]  # type: ignore[index]
            for i in range(8)
        ]  # fmt: skip
    runs: list[str] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        runs.extend(run.name for run in run_configured_collectors(session_engine, now).runs)

    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        mine = [name for name in runs if name.startswith("shard scrape")]
        assert sorted(mine) == [f"shard scrape {i}" for i in range(8)]  # each once, none twice
        assert len(runs) == len(set(runs))
    finally:
        with session_engine.begin() as c:
            c.execute(text("DELETE FROM sql_collectors WHERE id = ANY(:ids)"), {"ids": ids})


def test_the_alerts_and_collector_jobs_run_on_every_worker() -> None:
    from jobs.registry import find_job

    assert not find_job("alerts").singleton  # each worker claims its own share
    assert not find_job("collect_configured").singleton
    assert not find_job("health_checks").singleton
