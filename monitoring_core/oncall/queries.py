"""Reads for pages and the API: who is on call now and next, and a schedule's calendar."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.oncall.rules import OnCall, shifts_between
from monitoring_core.oncall.store import list_schedules, load_rotas
from monitoring_core.schema import users

__all__ = ["calendar_days", "on_call_now_and_next", "schedule_spans"]

HORIZON = timedelta(days=35)


def _names(conn: Connection) -> dict[int, str]:
    return {r.id: r.username for r in conn.execute(select(users.c.id, users.c.username))}


def _span(span: OnCall, names: dict[int, str]) -> dict[str, Any]:
    name = names.get(span.user_id) if span.user_id is not None else None
    return {
        "user_id": span.user_id,
        "username": name,
        "starts_at": span.starts_at,
        "ends_at": span.ends_at,
        "source": span.source,
    }


def on_call_now_and_next(conn: Connection, *, now: datetime, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Per schedule: `{schedule_id, name, now: span, next: span | None}`."""
    schedules = list_schedules(conn)
    rotas = load_rotas(conn, [s["id"] for s in schedules], now, now + HORIZON)
    names, found = _names(conn), []
    for schedule in schedules:
        layers, overrides = rotas[schedule["id"]]
        spans = shifts_between(layers, overrides, now, now + HORIZON, tz)
        found.append(
            {
                "schedule_id": schedule["id"],
                "name": schedule["name"],
                "now": _span(spans[0], names),
                "next": _span(spans[1], names) if len(spans) > 1 else None,
            }
        )
    return found


def schedule_spans(
    conn: Connection, *, schedule_id: int, start: datetime, end: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Who is on call over [start, end), one span per change of person."""
    layers, overrides = load_rotas(conn, [schedule_id], start, end)[schedule_id]
    names = _names(conn)
    return [_span(s, names) for s in shifts_between(layers, overrides, start, end, tz)]


def calendar_days(
    spans: list[dict[str, Any]], *, first_day: date, days: int, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """One entry per local day: `{day, people: [(name, from HH:MM)]}` (pure), for a calendar."""
    grid = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        start = datetime.combine(day, time(0), tzinfo=tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        people = [
            (s["username"] or "nobody", max(s["starts_at"], start).astimezone(tz).strftime("%H:%M"))
            for s in spans
            if s["starts_at"] < end and s["ends_at"] > start
        ]
        grid.append({"day": day, "people": people})
    return grid
