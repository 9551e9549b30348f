"""Delivering the outbox: claim with `FOR UPDATE SKIP LOCKED`, send outside the transaction,
record every attempt, retry with backoff, rate-limit per channel. The delivery round itself
(send, record, self-alert on a failing channel) is `flows.notification_delivery.deliver_due`.

At-least-once, and once unless a worker dies: a claim is a lease (`next_attempt_at = now +
LEASE`) committed before sending, taken for ONE notification right before it is sent (a lease
over a whole batch sent one by one ran out under a slow channel, and another worker resent the
rest) and renewed while a send is still running (`renew_lease`). Two workers never claim the
same row while a lease runs; a worker that dies mid-send leaves that one row to be claimed again
when its lease runs out, and the receiver gets the same idempotency key both times.

One account of each delivery (`delivery_log`): a delivery is an outbox row (or a test send)
and its outcome is `sent`, `failed` (an enabled channel refused it, for good), `skipped` (its
channel is disabled: nobody was reached, but nothing is broken), or `retrying`/`sending` while
unfinished. The outbox row, the last attempt row, the incident timeline
(`incidents.notifications`), Settings' figures (`channel_health`, counted from the log) and the
delivery log itself all use these words, so they tell the same story.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, text, update

from monitoring_core.notify.transport import SendResult
from monitoring_core.schema import (
    notification_channels,
    notification_deliveries,
    notification_outbox,
)

__all__ = [
    "LEASE",
    "MAX_ATTEMPTS",
    "OUTCOMES",
    "Claimed",
    "backoff",
    "channel_health",
    "claim_due",
    "claim_next",
    "delivery_log",
    "record_attempt",
    "renew_lease",
]

OUTCOMES = ("sent", "failed", "skipped", "retrying", "sending")

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)  # longer than Apprise's 4 s + 4 s timeouts with room to spare
MAX_ATTEMPTS = 6
RATE_WINDOW = timedelta(minutes=1)
Sender = Callable[..., SendResult]


def backoff(attempts: int) -> timedelta:
    """30 s, 1, 2, 4, 8 min … capped at 30 min, after the n-th failed attempt."""
    return min(timedelta(seconds=30) * 2 ** max(attempts - 1, 0), timedelta(minutes=30))


@dataclass(frozen=True)
class Claimed:
    id: int
    channel_id: int
    channel_name: str
    url: str
    is_enabled: bool
    title: str
    body: str
    notify_type: str
    attempts: int
    idempotency_key: str
    kind: str
    alert_instance_id: int | None
    incident_id: int | None


_CLAIM = text(
    """
    UPDATE notification_outbox o
       SET status = 'sending', claimed_at = :now, claimed_by = :worker,
           attempts = o.attempts + 1, next_attempt_at = :lease_end
      FROM notification_channels c
     WHERE c.id = o.channel_id
       AND o.id IN (SELECT id FROM notification_outbox
                     WHERE status IN ('pending', 'sending') AND next_attempt_at <= :now
                     ORDER BY next_attempt_at, id
                     LIMIT :limit
                     FOR UPDATE SKIP LOCKED)
    RETURNING o.id, o.channel_id, c.name AS channel_name, c.url, c.is_enabled, o.title,
              o.body, o.notify_type, o.attempts, o.idempotency_key, o.kind, o.alert_instance_id,
              o.incident_id, c.rate_limit_per_minute
    """
)


def claim_due(conn: Connection, *, now: datetime, worker_id: str, limit: int = 1) -> list[Claimed]:
    """Lease up to `limit` due rows to this worker; rows over their channel's rate limit are put
    back. Every row claimed must be sent within LEASE: claim only what is sent right away."""
    return _claim(conn, now=now, worker_id=worker_id, limit=limit)[0]


def claim_next(conn: Connection, *, now: datetime, worker_id: str) -> tuple[Claimed | None, int]:
    """Lease the next due row this worker may send now, and how many rate-limited rows were put
    back on the way (each moves RATE_WINDOW / 4 into the future, so the loop ends)."""
    deferred = 0
    while True:
        claimed, put_back = _claim(conn, now=now, worker_id=worker_id, limit=1)
        deferred += put_back
        if claimed or not put_back:
            return (claimed[0] if claimed else None), deferred


def renew_lease(conn: Connection, *, item_id: int, worker_id: str, until: datetime) -> bool:
    """Extend this worker's lease on a row it is still sending; False once it is not ours."""
    o = notification_outbox
    done = conn.execute(
        update(o)
        .where(o.c.id == item_id, o.c.claimed_by == worker_id, o.c.status == "sending")
        .values(next_attempt_at=until)
    )
    return done.rowcount == 1


def _claim(
    conn: Connection, *, now: datetime, worker_id: str, limit: int
) -> tuple[list[Claimed], int]:
    result = conn.execute(
        _CLAIM, {"now": now, "worker": worker_id, "lease_end": now + LEASE, "limit": limit}
    )
    rows = sorted(result.all(), key=lambda r: r.id)
    allowed = _rate_allowance(conn, {r.channel_id: r.rate_limit_per_minute for r in rows}, now)
    claimed, deferred = [], []
    for row in rows:
        if allowed[row.channel_id] > 0:
            allowed[row.channel_id] -= 1
            claimed.append(Claimed(**{f: getattr(row, f) for f in Claimed.__dataclass_fields__}))
        else:
            deferred.append(row.id)
    if deferred:
        conn.execute(
            update(notification_outbox)
            .where(notification_outbox.c.id.in_(deferred))
            .values(
                status="pending",
                attempts=notification_outbox.c.attempts - 1,  # not an attempt: never sent
                next_attempt_at=now + RATE_WINDOW / 4,
                claimed_by=None,
            )
        )
    return claimed, len(deferred)


def _rate_allowance(conn: Connection, limits: dict[int, int], now: datetime) -> Counter[int]:
    """Sends left per channel in the sliding minute."""
    used: dict[int, int] = dict(
        conn.execute(
            select(notification_deliveries.c.channel_id, func.count())
            .where(
                notification_deliveries.c.channel_id.in_(list(limits)),
                notification_deliveries.c.attempted_at > now - RATE_WINDOW,
            )
            .group_by(notification_deliveries.c.channel_id)
        ).all()
    )
    return Counter({cid: max(limit - used.get(cid, 0), 0) for cid, limit in limits.items()})


def record_attempt(
    conn: Connection, *, item: Claimed, result: SendResult, now: datetime, worker_id: str
) -> str:
    """Write the attempt and move the row on: sent, retry later, or failed for good."""
    conn.execute(
        insert(notification_deliveries).values(
            outbox_id=item.id,
            channel_id=item.channel_id,
            attempted_at=now,
            # A disabled channel is not a failing one: its rows are closed as "skipped", and
            # the self-alert's failure streak (flows/notification_delivery.py) ignores them.
            status="sent" if result.ok else ("failed" if item.is_enabled else "skipped"),
            latency_ms=result.latency_ms,
            error=result.error,
        )
    )
    if result.ok:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
    elif not item.is_enabled:
        values = {"status": "skipped", "last_error": result.error}
    elif item.attempts >= MAX_ATTEMPTS:
        values = {"status": "failed", "last_error": result.error}
    else:
        values = {
            "status": "pending",
            "last_error": result.error,
            "next_attempt_at": now + backoff(item.attempts),
        }
    conn.execute(
        update(notification_outbox)
        .where(notification_outbox.c.id == item.id, notification_outbox.c.claimed_by == worker_id)
        .values(**values)
    )
    return str(values["status"])


_LOG = text(
    """
    WITH tries AS (
        SELECT d.id, d.outbox_id, d.channel_id, d.attempted_at, d.status, d.error, d.latency_ms,
               row_number() OVER w_last AS newest,
               count(*) OVER w_all AS attempts,
               avg(d.latency_ms) OVER w_all AS avg_latency_ms
          FROM notification_deliveries d
         WHERE d.attempted_at >= :since
        WINDOW w_all AS (PARTITION BY coalesce(d.outbox_id, -d.id)),
               w_last AS (PARTITION BY coalesce(d.outbox_id, -d.id)
                          ORDER BY d.attempted_at DESC, d.id DESC)
    )
    SELECT t.outbox_id, t.channel_id, c.name AS channel, t.attempted_at AS last_attempt_at,
           t.attempts, t.avg_latency_ms,
           CASE WHEN o.id IS NULL THEN t.status
                WHEN o.status = 'pending' THEN 'retrying'
                ELSE o.status END AS status,
           coalesce(o.last_error, t.error) AS error,
           coalesce(o.kind, 'test') AS kind, o.title, o.incident_id
      FROM tries t
      LEFT JOIN notification_outbox o ON o.id = t.outbox_id
      LEFT JOIN notification_channels c ON c.id = t.channel_id
     WHERE t.newest = 1
     ORDER BY t.attempted_at DESC, t.outbox_id DESC NULLS LAST
     LIMIT :limit
    """
)


def delivery_log(
    conn: Connection, *, since: datetime, limit: int = 100_000
) -> list[dict[str, Any]]:
    """Every delivery with an attempt since `since`, newest first: one row per outbox row (or
    test send) with its outcome (OUTCOMES), attempts, last error, channel and incident."""
    rows = conn.execute(_LOG, {"since": since, "limit": limit}).mappings()
    return [dict(row) for row in rows]


def channel_health(conn: Connection, *, since: datetime) -> list[dict[str, Any]]:
    """Per channel, counted from `delivery_log` since `since` (for the settings page):
    deliveries by outcome (`sent`, `failures` = failed, `skipped`, `pending`), `attempts`
    (every try, retries included), mean latency and the last attempt."""
    channels = conn.execute(
        select(notification_channels.c.id, notification_channels.c.name).order_by(
            notification_channels.c.id
        )
    ).all()
    out = {
        cid: {
            "id": cid,
            "name": name,
            "deliveries": 0,
            "sent": 0,
            "failures": 0,
            "skipped": 0,
            "pending": 0,
            "attempts": 0,
            "avg_latency_ms": None,
            "last_attempt_at": None,
        }
        for cid, name in channels
    }
    latency: dict[int, list[float]] = {}
    for row in delivery_log(conn, since=since):
        h = out.get(row["channel_id"])
        if h is None:  # a channel deleted since
            continue
        h["deliveries"] += 1
        key = {"sent": "sent", "failed": "failures", "skipped": "skipped"}.get(row["status"])
        h[key or "pending"] += 1
        h["attempts"] += row["attempts"]
        if row["avg_latency_ms"] is not None:
            latency.setdefault(row["channel_id"], []).extend(
                [float(row["avg_latency_ms"])] * int(row["attempts"])
            )
        if h["last_attempt_at"] is None or row["last_attempt_at"] > h["last_attempt_at"]:
            h["last_attempt_at"] = row["last_attempt_at"]
    for cid, values in latency.items():
        out[cid]["avg_latency_ms"] = sum(values) / len(values)
    return list(out.values())
