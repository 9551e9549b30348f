"""Notification delivery: one round of the outbox, and the system's own alert on a failing channel.

`deliver_due` claims one due row at a time (commit), sends it outside any transaction under a
lease renewed while the send runs, records each attempt in its own transaction and feeds the
result to the self-alert: a channel whose last deliveries all failed fires an alert of the
built-in rule "Notification channel failing" (key `channel:ID`), notified on the other channels; the channel's next success resolves it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from monitoring_core.alerts.engine import AlertState, Check, Decision, self_alert_state
from monitoring_core.alerts.store import load_states
from monitoring_core.alerts.writes import save_decision
from monitoring_core.audit import system_actor
from monitoring_core.config import load_settings
from monitoring_core.flows.ack_link import add_ack_link
from monitoring_core.notify.delivery import (
    LEASE,
    Claimed,
    Sender,
    claim_next,
    record_attempt,
    renew_lease,
)
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import render_self_alert
from monitoring_core.notify.transport import SendResult, send
from monitoring_core.schema import alert_rules, notification_channels, notification_deliveries

__all__ = [
    "FAILING_AFTER",
    "SYSTEM_RULE_NAME",
    "DeliveryReport",
    "after_attempt",
    "deliver_due",
    "ensure_system_rule",
]

log = logging.getLogger(__name__)

FAILING_AFTER = 3  # consecutive failed attempts
SYSTEM_RULE_NAME = "Notification channel failing"
SYSTEM_RULE_OWNER = system_actor("notify")  # tells the built-in rule from a namesake


def ensure_system_rule(conn: Connection) -> int:
    """The built-in rule's id (created disabled: the delivery job drives it, not evaluation)."""
    found = conn.execute(
        select(alert_rules.c.id).where(
            alert_rules.c.alert_name == SYSTEM_RULE_NAME,
            alert_rules.c.created_by == SYSTEM_RULE_OWNER,
        )
    ).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            insert(alert_rules)
            .values(
                alert_name=SYSTEM_RULE_NAME,
                description="Raised by the delivery job when a channel keeps failing.",
                condition_config={"type": "absence", "metric": "notification_delivery"},
                severity_level="high",
                is_enabled=False,
                created_by=SYSTEM_RULE_OWNER,
            )
            .returning(alert_rules.c.id)
        ).scalar_one()
    )


def _recent_failures(conn: Connection, channel_id: int) -> list[dict[str, Any]]:
    d = notification_deliveries
    rows = conn.execute(
        select(d.c.status, d.c.error)
        .where(d.c.channel_id == channel_id, d.c.status != "skipped")
        .order_by(d.c.attempted_at.desc(), d.c.id.desc())
        .limit(FAILING_AFTER)
    )
    return [dict(r._mapping) for r in rows]


def after_attempt(
    conn: Connection, *, channel_id: int, ok: bool, now: datetime, public_url: str
) -> None:
    """Fire or resolve the channel's self-alert after an attempt was recorded."""
    rule_id = ensure_system_rule(conn)
    key = f"channel:{channel_id}"
    row = load_states(conn, [rule_id]).get((rule_id, key))
    firing = row is not None and row["status"] == "firing"
    if ok:
        if firing:
            _save(conn, rule_id, key, row, "resolved", now, "deliveries succeed again")
        return
    recent = _recent_failures(conn, channel_id)
    if firing or len(recent) < FAILING_AFTER or any(r["status"] != "failed" for r in recent):
        return
    instance_id = _save(conn, rule_id, key, row, "firing", now, f"{FAILING_AFTER} failures")
    name = conn.execute(
        select(notification_channels.c.name).where(notification_channels.c.id == channel_id)
    ).scalar_one()
    others = conn.execute(
        select(notification_channels.c.id).where(
            notification_channels.c.id != channel_id, notification_channels.c.is_enabled
        )
    ).scalars()
    message = render_self_alert(name, FAILING_AFTER, str(recent[0]["error"]), public_url=public_url)
    rows = outbox_rows(
        channel_ids=list(others),
        message=message,
        kind="self",
        idempotency_key=f"self:{instance_id}:{now.isoformat()}",
        now=now,
        alert_instance_id=instance_id,
    )
    enqueue(conn, rows)


def _save(
    conn: Connection,
    rule_id: int,
    key: str,
    row: dict[str, Any] | None,
    status: str,
    now: datetime,
    message: str,
) -> int:
    before = AlertState(status=row["status"]) if row else AlertState()
    state = self_alert_state(status == "firing", row, now)
    decision = Decision(
        state, Check(status == "firing", None, None, message), "high", from_status=before.status
    )
    instance_id = save_decision(
        conn,
        rule_id=rule_id,
        alert_key=key,
        dimensions={"channel_id": key[8:]},
        decision=decision,
        now=now,
        instance_id=row["id"] if row else None,
    )
    assert instance_id is not None
    return instance_id


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # attempts an enabled channel refused (retried until MAX_ATTEMPTS)
    deferred: int = 0
    skipped: int = 0  # for a disabled channel: nobody reached, nothing broken

    def summary(self) -> str:
        return (
            f"sent {self.sent}, failed {self.failed}, skipped {self.skipped} (channel disabled),"
            f" rate-limited {self.deferred}"
        )


def deliver_due(
    engine: Engine,
    now: datetime,
    *,
    worker_id: str = "worker",
    limit: int = 50,
    sender: Sender = send,
    public_url: str | None = None,
    api_public_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    renew_every_s: float = LEASE.total_seconds() / 4,
) -> DeliveryReport:
    """One delivery round of up to `limit` sends: claim one row (commit), send it under a lease
    that is renewed while the send runs, record it in its own transaction; then the next.
    `clock` tells the time as the round goes on (the job passes one; by default it stays `now`)."""
    if public_url is None or api_public_url is None:
        settings = load_settings()
        public_url = public_url or settings.public_url
        api_public_url = api_public_url or settings.api_public_url
    clock = clock or (lambda: now)
    report = DeliveryReport()
    for _ in range(limit):
        with engine.begin() as conn:
            item, deferred = claim_next(conn, now=clock(), worker_id=worker_id)
            if item is not None:
                item = add_ack_link(conn, item, now=clock(), api_public_url=api_public_url)
        report.deferred += deferred
        if item is None:
            break
        with _LeaseKeeper(engine, item.id, worker_id, clock, renew_every_s):
            result = _send(item, sender)
        with engine.begin() as conn:
            at = clock()
            status = record_attempt(conn, item=item, result=result, now=at, worker_id=worker_id)
            if item.is_enabled:
                after_attempt(
                    conn, channel_id=item.channel_id, ok=result.ok, now=at, public_url=public_url
                )
        report.sent += result.ok
        report.failed += not result.ok and item.is_enabled
        report.skipped += not result.ok and not item.is_enabled
        if not result.ok:
            log.warning(
                "delivery %s to %s %s: %s", item.id, item.channel_name, status, result.error
            )
    return report


def _send(item: Claimed, sender: Sender) -> SendResult:
    if not item.is_enabled:
        return SendResult(False, 0.0, "channel disabled")
    return sender(
        item.url,
        title=item.title,
        body=item.body,
        notify_type=item.notify_type,
        idempotency_key=item.idempotency_key,
    )


class _LeaseKeeper:
    """While a send runs, renew its lease every `every_s` seconds from a thread of its own (a
    send that outlives LEASE, a hung SMTP server say, must not be taken over and sent twice)."""

    def __init__(
        self,
        engine: Engine,
        item_id: int,
        worker_id: str,
        clock: Callable[[], datetime],
        every_s: float,
    ) -> None:
        self._args = (engine, item_id, worker_id, clock)
        self._every_s = every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{item_id}", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        engine, item_id, worker_id, clock = self._args
        while not self._done.wait(self._every_s):
            try:
                with engine.begin() as conn:
                    until = clock() + LEASE
                    if not renew_lease(conn, item_id=item_id, worker_id=worker_id, until=until):
                        return
            except Exception:  # the send goes on; the next renewal may work
                log.exception("renewing the lease of delivery %s failed", item_id)
