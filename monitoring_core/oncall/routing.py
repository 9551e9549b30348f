"""Who a notification reaches: targets (channels, people, schedules) resolved to channel ids at
`now`, and the default route by severity for a rule that names no channels.

A schedule resolves to the contact methods of whoever is on call at `now` (`rules.on_call_at`);
a person to their enabled contact methods. The default route is the `notification_routes` row
with the highest `min_severity` the alert reaches (a fresh install has one, `info`: the first
admin).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.enums import Severity
from monitoring_core.oncall.rules import on_call_at
from monitoring_core.oncall.store import load_rotas
from monitoring_core.schema import notification_channels, notification_routes, users

__all__ = [
    "contact_channels",
    "default_route",
    "on_call_users",
    "recipients",
    "route_channels",
]

_WINDOW = timedelta(seconds=1)


def on_call_users(
    conn: Connection, schedule_ids: Iterable[int], now: datetime, tz: ZoneInfo
) -> dict[int, int | None]:
    """schedule id -> the user on call at `now` (None: nobody), two queries for all."""
    rotas = load_rotas(conn, schedule_ids, now, now + _WINDOW)
    return {
        sid: on_call_at(layers, overrides, now, tz)[0] for sid, (layers, overrides) in rotas.items()
    }


def contact_channels(conn: Connection, user_ids: Iterable[int]) -> list[int]:
    """The enabled contact methods of these active users, in user order."""
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        return []
    c = notification_channels.c
    rows = conn.execute(
        select(c.id, c.user_id)
        .join(users, users.c.id == c.user_id)
        .where(c.user_id.in_(wanted), c.is_enabled, users.c.is_active)
        .order_by(c.id)
    ).all()
    return [row.id for uid in wanted for row in rows if row.user_id == uid]


def recipients(
    conn: Connection, targets: Mapping[str, Any], *, now: datetime, tz: ZoneInfo
) -> list[int]:
    """Channel ids for `{channels?, users?, schedules?}` at `now`, de-duplicated, order kept."""
    people = list(targets.get("users") or [])
    schedules = list(targets.get("schedules") or [])
    if schedules:
        people += [u for u in on_call_users(conn, schedules, now, tz).values() if u is not None]
    channels = list(targets.get("channels") or []) + contact_channels(conn, people)
    return list(dict.fromkeys(int(c) for c in channels))


def default_route(conn: Connection, severity: str) -> dict[str, Any] | None:
    """The route for an alert of this severity: the most specific one it reaches, or None."""
    try:
        level = Severity(severity)
    except ValueError:
        level = Severity.INFO
    reached = [
        dict(row._mapping)
        for row in conn.execute(select(notification_routes))
        if level.at_least(Severity(row.min_severity))
    ]
    return min(reached, key=lambda r: Severity(r["min_severity"]).rank, default=None)


def route_channels(conn: Connection, severity: str, *, now: datetime, tz: ZoneInfo) -> list[int]:
    """The channel ids the default route reaches for this severity at `now` (maybe none)."""
    route = default_route(conn, severity)
    return recipients(conn, route["targets"], now=now, tz=tz) if route else []
