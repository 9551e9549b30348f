"""On-call on the pages, on the demo data: Overview and Alerts say who is on call now and next,
Settings → Schedules draws a 4-week calendar, and a responder covers a shift for themselves."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.oncall import store
from monitoring_core.schema import audit_log, oncall_overrides
from tests.ui_harness import USER_KEY, table_with

AppFactory = Callable[[Role | None], AppTest]


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_it_shows_who_is_on_call_on_the_overview(demo_engine: Engine, logged_in_app) -> None:
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception
    text = _markdown(at)
    assert "**Primary** · on call now: **" in text and "· next: **" in text


def test_it_draws_four_weeks_of_the_rota_in_settings(demo_engine: Engine, logged_in_app) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page("pages/settings.py")
    at.query_params["tab"] = "Schedules"  # one section at a time, named in the URL
    at.run()
    assert not at.exception
    calendar = table_with(at, "Week of", "Mon", "Sat")
    assert len(calendar) == 4
    names = {"priya", "tom", "sam", "alex"}
    assert all(any(n in cell for n in names) for cell in calendar["Sat"])
    assert not any(cell.startswith("0") for cell in calendar["Mon"])  # `7 Dec`, not `07 Dec`
    routes = table_with(at, "At or above", "Schedules")
    assert set(routes["At or above"]) == {"High", "Info"}
    layers = table_with(at, "Layer", "Handoff", "Days")
    assert dict(zip(layers["Layer"], layers["Handoff"], strict=True)) == {
        "Wedding weekend": "Saturday 00:00",
        "Weekdays": "Monday 09:00",
    }
    assert set(layers["Days"]) == {"Sat, Sun", "Every day"}
    (override,) = table_with(at, "Person", "From", "Until", "Added by").to_dict("records")
    assert override["Added by"] == "demo (system)"
    for moment in (override["From"], override["Until"]):  # `Fri 19 Jun 13:59`, no `+00:00`
        assert re.fullmatch(r"\w{3} \d{1,2} \w{3} \d\d:\d\d", moment), moment
    people = table_with(at, "User", "Role", "Time zone")
    assert set(people["Role"]) <= {"Admin", "Responder", "Viewer"}


def test_it_lets_a_responder_cover_a_shift(demo_engine: Engine, logged_in_app) -> None:
    at = logged_in_app(Role.RESPONDER)
    me = at.session_state[USER_KEY]
    at.run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception and "on call now" in _markdown(at)
    at.number_input(key="cover_hours").set_value(4)
    at.text_input(key="cover_reason").set_value("swap with tom")
    next(b for b in at.button if b.label == "Put me on call").click().run()
    assert not at.exception, at.exception
    assert any("You are on call" in s.value for s in at.success), [e.value for e in at.error]
    with demo_engine.begin() as conn:
        mine = conn.execute(
            select(oncall_overrides).where(oncall_overrides.c.user_id == me.id)
        ).one()
        audit = (
            conn.execute(
                select(audit_log.c.actor).where(audit_log.c.action == "schedule.override_add")
            )
            .scalars()
            .all()
        )
        conn.execute(oncall_overrides.delete().where(oncall_overrides.c.id == mine.id))
    assert (mine.ends_at - mine.starts_at).total_seconds() == 4 * 3600
    assert f"user:{me.username}" in audit


def test_it_lets_a_responder_add_their_own_contact_method(
    demo_engine: Engine, logged_in_app
) -> None:
    at = logged_in_app(Role.RESPONDER)
    me = at.session_state[USER_KEY]
    at.run()
    at.switch_page("pages/alerts.py").run()
    at.text_input(key="my_url").set_value("json://127.0.0.1:9/s3cret")
    next(b for b in at.button if b.label == "Add contact method").click().run()
    assert not at.exception and any("Contact method added" in s.value for s in at.success)
    assert "s3cret" not in _markdown(at)
    with demo_engine.begin() as conn:
        (person,) = [p for p in store.list_people(conn) if p["id"] == me.id]
        (contact,) = person["contacts"]
        store.remove_contact(conn, user_id=me.id, channel_id=contact["id"])
    assert contact["name"] == f"{me.username} · phone"
