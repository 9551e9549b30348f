"""Splitting per-item work (alert rules, collectors) across every live worker.

Membership is the `worker_heartbeats` table the workers already write every 5 s: a worker is
live while it was seen in the last `LEASE` and has not said goodbye. Each item has an owner
among the live workers by rendezvous hashing (highest hash of worker id + item key), so when a
worker joins or leaves only its own share of the items moves. A worker evaluates

- the items it owns, and
- orphans: items nobody claimed in the previous cycle (their owner died, or two workers briefly
  saw different member lists) — so a dead worker's share is picked up after one missed cycle,
  before its lease has even run out.

Exactly once per cycle: before evaluating, a worker claims its items for the cycle number
(`floor(epoch(now) / interval)`) with one `INSERT … ON CONFLICT DO UPDATE … WHERE cycle <
EXCLUDED.cycle RETURNING`: a row is claimed by at most one worker per cycle, whatever the
member lists said. Claims are short statements of their own (autocommit), never held across
the evaluation, so two workers never wait on each other.

Items that must be evaluated together (a composite alert rule and its children, which read
each other's results within one cycle) share one item key, so they always have one owner.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text

from monitoring_core.schema import worker_heartbeats

__all__ = ["LEASE", "claim", "cycle_number", "live_workers", "owner", "owners", "split"]

LEASE = timedelta(seconds=15)  # three missed heartbeats (every 5 s): the worker is gone

_CLAIM = text(
    """
    INSERT INTO shard_claims (kind, item_id, cycle, worker_id, claimed_at)
    SELECT :kind, item, :cycle, :worker, :now FROM unnest(CAST(:items AS bigint[])) AS item
    ON CONFLICT (kind, item_id) DO UPDATE
        SET cycle = EXCLUDED.cycle, worker_id = EXCLUDED.worker_id, claimed_at = EXCLUDED.claimed_at
        WHERE shard_claims.cycle < EXCLUDED.cycle
    RETURNING item_id
    """
)


def cycle_number(now: datetime, interval_s: float) -> int:
    """The evaluation cycle `now` falls in: the same number on every worker in that interval."""
    return math.floor(now.timestamp() / max(interval_s, 0.001))


def live_workers(conn: Connection, now: datetime) -> list[str]:
    """Ids of the workers seen in the last LEASE that have not said goodbye, sorted."""
    w = worker_heartbeats.c
    stopping = func.coalesce(w.status["stopping"].as_boolean(), False)
    query = select(w.worker_id).where(w.last_seen >= now - LEASE, ~stopping).order_by(w.worker_id)
    return list(conn.execute(query).scalars())


def _weight(worker: str, key: str) -> bytes:
    return hashlib.blake2b(f"{worker}\x00{key}".encode(), digest_size=8).digest()


def owner(key: str, workers: Sequence[str]) -> str | None:
    """The worker that owns `key` (rendezvous hashing); None without workers."""
    return max(workers, key=lambda worker: _weight(worker, key)) if workers else None


# Owners by item key for the last member list seen: members change rarely, and hashing every
# key for every member each cycle was ~3 % of a 10,000-rule worker's cycle.
_OWNERS: tuple[tuple[str, ...], dict[str, str | None]] = ((), {})


def split(keys: Mapping[int, str], workers: Sequence[str]) -> dict[str, list[int]]:
    """Items (id → item key) per owning worker."""
    global _OWNERS
    members = tuple(workers)
    if _OWNERS[0] != members or len(_OWNERS[1]) > 4 * len(keys) + 1000:
        _OWNERS = (members, {})
    known = _OWNERS[1]
    shares: dict[str, list[int]] = {worker: [] for worker in workers}
    for item, key in keys.items():
        found = known.get(key, "")
        if found == "":
            found = known[key] = owner(key, workers)
        if found is not None:
            shares[found].append(item)
    return shares


def claim(
    conn: Connection,
    *,
    kind: str,
    keys: Mapping[int, str],
    worker_id: str,
    now: datetime,
    interval_s: float,
    own: bool = True,
    orphans: bool = True,
) -> list[int]:
    """Claim this worker's items for the cycle `now` is in, and return the ones it got.

    `keys` maps every item id to its item key (items with the same key go together). Without
    any live worker (a cycle run by hand, or a worker that has not written its first heartbeat
    yet) the caller is treated as the only member. `own` and `orphans` choose what to claim:
    its own share, the orphans, or both. Claiming its own share first and the orphans once
    that is done (the alert cycle) leaves every live owner time to claim its own: at a
    (re)start, when every item is an orphan, the first worker no longer takes them all.
    """
    cycle = cycle_number(now, interval_s)
    workers = live_workers(conn, now)
    if worker_id not in workers:
        workers = sorted([*workers, worker_id])
    mine = set(split(keys, workers).get(worker_id, [])) if own else set()
    if not orphans:
        return _claim_items(conn, kind, keys, mine, cycle, worker_id, now)
    found = conn.execute(
        text("SELECT item_id, cycle FROM shard_claims WHERE kind = :kind"), {"kind": kind}
    )
    last: dict[int, int] = {int(item): int(cycle) for item, cycle in found}
    # Orphans: not claimed in the cycle before this one (and not this one) by anyone.
    wanted = mine | {item for item in keys if last.get(item, cycle - 2) < cycle - 1}
    return _claim_items(conn, kind, keys, wanted, cycle, worker_id, now)


def _claim_items(
    conn: Connection,
    kind: str,
    keys: Mapping[int, str],
    wanted: set[int],
    cycle: int,
    worker_id: str,
    now: datetime,
) -> list[int]:
    # A group is claimed whole: one member orphaned means all of its members are taken here.
    groups = {keys[item] for item in wanted}
    wanted = {item for item, key in keys.items() if key in groups}
    if not wanted:
        return []
    rows = conn.execute(
        _CLAIM,
        {"kind": kind, "items": sorted(wanted), "cycle": cycle, "worker": worker_id, "now": now},
    )
    return sorted(int(item) for item in rows.scalars())


def owners(conn: Connection, kind: str) -> Iterable[tuple[str, int, int]]:
    """(worker, items claimed, latest cycle) per worker for `kind`: who owns what, for pages."""
    rows = conn.execute(
        text(
            "SELECT worker_id, count(*), max(cycle) FROM shard_claims WHERE kind = :kind "
            "GROUP BY worker_id ORDER BY worker_id"
        ),
        {"kind": kind},
    )
    return [(str(w), int(n), int(c)) for w, n, c in rows]
