"""Demo on-call: five people with contact methods, a weekday rota and a wedding-weekend layer,
a holiday override, default routes by severity, and the demo policies paging the rota.

The people cannot sign in (their passwords are random and never shown); the first admin the
supervisor prints can. Their contact methods point at the demo's local webhook and start
disabled like the demo channel, so nothing fails while no receiver listens.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection, select, update

from monitoring_core.accounts import create_user
from monitoring_core.audit import system_actor
from monitoring_core.config import load_settings
from monitoring_core.enums import Role
from monitoring_core.oncall import store
from monitoring_core.oncall.validate import parse_schedule
from monitoring_core.schema import escalation_policies, notification_channels

__all__ = ["PEOPLE", "load"]

ACTOR = system_actor("demo")
# (name, role, time zone): the platform's on-call team and its CTO
PEOPLE = (
    ("priya", Role.RESPONDER, "Europe/London"),
    ("tom", Role.RESPONDER, "Europe/London"),
    ("sam", Role.RESPONDER, "Europe/Lisbon"),
    ("alex", Role.RESPONDER, "Europe/London"),
    ("morgan.cto", Role.RESPONDER, "Europe/London"),
)
HOOK = "json://127.0.0.1:9099/people/"


def _people(conn: Connection) -> dict[str, int]:
    ids = {}
    for name, role, tz in PEOPLE:
        user = create_user(conn, username=name, password=secrets.token_urlsafe(24), role=role)
        ids[name] = user.id
        store.set_time_zone(conn, user_id=user.id, time_zone=tz)
        contact = store.add_contact(conn, user_id=user.id, label="webhook", url=HOOK + name)
        conn.execute(
            update(notification_channels)
            .where(notification_channels.c.id == contact["id"])
            .values(is_enabled=False)
        )
    return ids


def _schedule(conn: Connection, ids: dict[str, int], now: datetime, tz: ZoneInfo) -> int:
    local = now.astimezone(tz).date()
    monday = local - timedelta(days=local.weekday() + 28)  # four weeks of history
    saturday = monday + timedelta(days=5)
    values, layers = parse_schedule(
        {
            "name": "Primary",
            "description": "Weekday rota, handoff Monday 09:00; wedding weekends on their own",
            "layers": [
                {"name": "Weekdays", "level": 1, "rotation": "weekly", "handoff_weekday": 0,
                 "handoff_time": "09:00", "starts_on": monday.isoformat(),
                 "members": [ids["priya"], ids["tom"], ids["sam"]]},
                {"name": "Wedding weekend", "level": 2, "rotation": "weekly",
                 "handoff_weekday": 5, "handoff_time": "00:00", "active_days": [5, 6],
                 "starts_on": saturday.isoformat(), "members": [ids["alex"], ids["priya"]]},
            ],
        }
    )  # fmt: skip
    return int(store.save_schedule(conn, schedule_id=None, values=values, layers=layers)["id"])


def _page_the_rota(conn: Connection, schedule: int, cto: int) -> None:
    """The demo policies' first step pages whoever is on call; the wedding day's second the CTO."""
    for row in conn.execute(select(escalation_policies)).all():
        steps = [dict(step) for step in row.steps]
        if steps:
            steps[0]["schedules"] = [schedule]
        if row.is_wedding_day and len(steps) > 1:
            steps[1]["users"] = [cto]
        conn.execute(
            update(escalation_policies)
            .where(escalation_policies.c.id == row.id)
            .values(steps=steps)
        )


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    tz = load_settings().tz
    ids = _people(conn)
    schedule = _schedule(conn, ids, now, tz)
    holiday = now + timedelta(days=9)
    store.add_override(
        conn,
        schedule_id=schedule,
        values={"user_id": ids["tom"], "starts_at": holiday, "ends_at": holiday + timedelta(days=2),
                "reason": "covering sam's holiday"},
        created_by=ACTOR,
        now=now,
    )  # fmt: skip
    targets = {"channels": [], "users": [], "schedules": [schedule]}
    store.save_route(conn, min_severity="high", targets=targets)
    store.save_route(conn, min_severity="info", targets={**targets, "schedules": [], "users": [ids["priya"]]})  # fmt: skip
    _page_the_rota(conn, schedule, ids["morgan.cto"])
    return {"users": len(PEOPLE), "oncall_schedules": 1, "oncall_overrides": 1,
            "notification_routes": 2}  # fmt: skip
