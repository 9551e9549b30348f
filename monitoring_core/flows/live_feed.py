"""What happened after a cursor: alert state changes, incident timeline entries, notification
deliveries, health check flips and error-group changes (new, regressed, resolved …), for the
live stream (`GET /api/monitoring/live/stream`).

The cursor is the last id seen in each of the five tables, so any API process can resume any
client from the tables alone (`Last-Event-ID`). Within one table events come in id order,
which is what makes "everything after this cursor" exact; across tables they are merged by
time. Delivery errors are left out (they can quote a channel's answer); statuses are enough.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from monitoring_core.schema import (
    alert_events,
    error_group_changes,
    health_check_flips,
    incident_timeline,
    notification_deliveries,
)

__all__ = ["Cursor", "LiveEvent", "events_after", "latest_cursor"]

_TABLES = {
    "alert": alert_events,
    "incident": incident_timeline,
    "delivery": notification_deliveries,
    "health": health_check_flips,
    "error": error_group_changes,
}


@dataclass(frozen=True)
class Cursor:
    alert: int = 0
    incident: int = 0
    delivery: int = 0
    health: int = 0
    error: int = 0

    def text(self) -> str:
        return f"{self.alert}.{self.incident}.{self.delivery}.{self.health}.{self.error}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """A cursor from its text (an SSE event id); ValueError for anything else."""
        parts = text.strip().split(".")
        if len(parts) != 5 or not all(p.isdigit() and len(p) <= 18 for p in parts):
            raise ValueError("Last-Event-ID must be five ids joined by dots, e.g. 12.3.40.2.0")
        return cls(*(int(p) for p in parts))

    def after(self, kind: str, row_id: int) -> Cursor:
        return replace(self, **{kind: max(getattr(self, kind), row_id)})

    def seen(self, kind: str, row_id: int) -> bool:
        return row_id <= getattr(self, kind)


@dataclass(frozen=True)
class LiveEvent:
    kind: str  # alert | incident | delivery | health | error
    row_id: int
    time: datetime
    data: dict[str, Any]

    @property
    def name(self) -> str:
        """The SSE `event:` field: the family (alert, incident, delivery, health, error_group);
        the payload's `type` says what happened (`alert.state`, `incident.acknowledged`, …)."""
        return str(self.data["type"]).split(".", 1)[0]

    def payload(self) -> str:
        return json.dumps(self.data, default=str, separators=(",", ":"))


def latest_cursor(conn: Connection) -> Cursor:
    """The newest id in each table: a new client starts here and sees only what comes next."""
    ids = [conn.execute(select(func.max(t.c.id))).scalar() or 0 for t in _TABLES.values()]
    return Cursor(*ids)


def _alerts(conn: Connection, after: int, limit: int) -> list[LiveEvent]:
    t = alert_events
    rows = conn.execute(select(t).where(t.c.id > after).order_by(t.c.id).limit(limit))
    return [
        LiveEvent(
            "alert",
            r.id,
            r.time,
            {
                "type": "alert.state",
                "rule_id": r.rule_id,
                "instance_id": r.instance_id,
                "from": r.from_status,
                "to": r.to_status,
                "value": r.value,
                "message": r.message,
                "actor": r.actor,
                "time": r.time.isoformat(),
            },
        )
        for r in rows
    ]


def _incidents(conn: Connection, after: int, limit: int) -> list[LiveEvent]:
    t = incident_timeline
    rows = conn.execute(select(t).where(t.c.id > after).order_by(t.c.id).limit(limit))
    return [
        LiveEvent(
            "incident",
            r.id,
            r.time,
            {
                "type": f"incident.{r.kind}",
                "incident_id": r.incident_id,
                "actor": r.actor,
                "message": r.message,
                "time": r.time.isoformat(),
            },
        )
        for r in rows
    ]


def _deliveries(conn: Connection, after: int, limit: int) -> list[LiveEvent]:
    t = notification_deliveries
    rows = conn.execute(select(t).where(t.c.id > after).order_by(t.c.id).limit(limit))
    return [
        LiveEvent(
            "delivery",
            r.id,
            r.attempted_at,
            {
                "type": "delivery",
                "outbox_id": r.outbox_id,
                "channel_id": r.channel_id,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "time": r.attempted_at.isoformat(),
            },
        )
        for r in rows
    ]


def _flips(conn: Connection, after: int, limit: int) -> list[LiveEvent]:
    t = health_check_flips
    rows = conn.execute(select(t).where(t.c.id > after).order_by(t.c.id).limit(limit))
    return [
        LiveEvent(
            "health",
            r.id,
            r.time,
            {
                "type": "health.flip",
                "check_id": r.check_id,
                "from": r.from_status,
                "to": r.to_status,
                "reason": r.reason,
                "time": r.time.isoformat(),
            },
        )
        for r in rows
    ]


def _error_changes(conn: Connection, after: int, limit: int) -> list[LiveEvent]:
    t = error_group_changes
    rows = conn.execute(select(t).where(t.c.id > after).order_by(t.c.id).limit(limit))
    return [
        LiveEvent(
            "error",
            r.id,
            r.time,
            {
                "type": f"error_group.{r.kind}",
                "group_id": r.group_id,
                "release": r.release,
                "actor": r.actor,
                "time": r.time.isoformat(),
            },
        )
        for r in rows
    ]


def _merged(lists: Iterable[list[LiveEvent]]) -> list[LiveEvent]:
    """By time, keeping each table's id order (heapq.merge takes heads in turn)."""
    return list(heapq.merge(*lists, key=lambda e: e.time))


def events_after(
    conn: Connection, cursor: Cursor, *, limit: int = 1000
) -> tuple[list[LiveEvent], Cursor]:
    """Events after `cursor` (at most `limit` per table) and the cursor after them."""
    events = _merged(
        reader(conn, getattr(cursor, kind), limit)
        for kind, reader in (
            ("alert", _alerts),
            ("incident", _incidents),
            ("delivery", _deliveries),
            ("health", _flips),
            ("error", _error_changes),
        )
    )
    for event in events:
        cursor = cursor.after(event.kind, event.row_id)
    return events, cursor
