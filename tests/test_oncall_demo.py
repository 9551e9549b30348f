"""The demo's rota: someone is on call now and on the wedding weekend, the demo policies page
the rota first, and a route exists for every severity."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from monitoring_core.oncall import queries, store
from monitoring_core.oncall.routing import default_route, on_call_users
from monitoring_core.policies.steps import parse_steps
from monitoring_core.schema import escalation_policies
from tests.ui_harness import DEMO_NOW

TZ = ZoneInfo("Europe/London")


def test_it_has_a_weekday_rota_and_a_wedding_weekend_layer(demo_engine: Engine) -> None:
    saturday = DEMO_NOW + timedelta(days=(5 - DEMO_NOW.astimezone(TZ).weekday()) % 7)
    with demo_engine.connect() as conn:
        (schedule,) = store.list_schedules(conn)
        (summary,) = queries.on_call_now_and_next(conn, now=DEMO_NOW, tz=TZ)
        weekend = queries.schedule_spans(
            conn, schedule_id=schedule["id"], start=saturday, end=saturday + timedelta(hours=1),
            tz=TZ,
        )  # fmt: skip
        on_call = on_call_users(conn, [schedule["id"]], DEMO_NOW, TZ)
        policies = list(conn.execute(select(escalation_policies)))
        routes = {sev: default_route(conn, sev) for sev in ("critical", "info")}
    assert summary["now"]["username"] in {"priya", "tom", "sam"}
    assert summary["now"]["source"] == "Weekdays" and summary["next"] is not None
    assert weekend[0]["source"] == "Wedding weekend"
    assert on_call[schedule["id"]] == summary["now"]["user_id"]
    assert all(parse_steps(p.steps)[0].schedules == (schedule["id"],) for p in policies)
    assert routes["critical"]["targets"]["schedules"] == [schedule["id"]]
    assert routes["info"]["targets"]["users"]
