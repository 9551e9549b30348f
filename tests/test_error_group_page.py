"""The error-group page through AppTest on the demo: the Regressed card agrees with the list,
the search lives in `?q=`, a link `?group=N&tab=…&event=…` opens exactly that, Older/Newer walk
the group's events, event ids read as hex, and a responder's assign and resolve keep the group
and tab open while viewers get no such controls."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.errors.group_actions import assign_group
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, error_groups
from tests.ui_harness import table_with

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]
PAGE = "pages/errors.py"
HEX = re.compile(r"^[0-9a-f]{32}$")


def _open(factory: AppFactory, role: Role, **params: str) -> AppTest:
    at = factory(role).run()
    at.switch_page(PAGE)
    at.query_params.clear()
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def _card_error(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(error_groups.c.id).where(error_groups.c.error_type == "CardError")
            ).scalar_one()
        )


def _click(at: AppTest, key: str) -> AppTest:
    button = at.button(key=key)
    assert not button.disabled, key
    button.click().run()
    assert not at.exception, at.exception
    return at


def _shown_event(at: AppTest) -> str:
    found = [re.search(r"Event ` ([0-9a-f]{32}) `", c.value) for c in at.caption]
    ids = [m.group(1) for m in found if m]
    assert len(ids) == 1, [c.value for c in at.caption]
    return ids[0]


def test_the_regressed_card_agrees_with_the_list_and_the_search_is_in_the_url(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = _open(logged_in_app, Role.VIEWER)
    cards = {m.label: m.value for m in at.metric}
    groups = table_with(at, "Status", "Error")
    regressed = int((groups["Status"] == "Regressed").sum())
    assert regressed >= 1  # the demo's card bug came back in payments@2.3.2
    assert cards["Regressed groups"] == str(regressed)
    assert "_" not in " ".join(groups["Layer"]) and "Third party" in set(groups["Layer"])
    at.text_input(key="errors_search").input("is:regressed").run()
    assert at.query_params["q"] == "is:regressed"
    assert list(table_with(at, "Status", "Error")["Error"]) == ["CardError"]
    at.text_input(key="errors_search").input("release:payments@2.3.2 !environment:production")
    at.run()
    assert "No error group matches in this range." in [i.value for i in at.info]
    at.text_input(key="errors_search").input("is:sleeping").run()
    assert any("The search cannot be read" in e.value and "sleeping" in e.value for e in at.error)
    # A shared link with a search opens the list already searched.
    linked = _open(logged_in_app, Role.VIEWER, q="type:Card*")
    assert linked.text_input(key="errors_search").value == "type:Card*"
    assert list(table_with(linked, "Status", "Error")["Error"]) == ["CardError"]


def test_a_link_opens_the_group_its_tab_and_walks_its_events(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    group = _card_error(demo_engine)
    at = _open(logged_in_app, Role.VIEWER, group=str(group), tab="Tags")
    assert "CardError" in [s.value for s in at.subheader]
    assert at.segmented_control(key="url_tab").value == "Tags"
    tags = " ".join(m.value for m in at.markdown)
    assert "**Release**" in tags and "**Environment**" in tags
    releases = {v for df in at.dataframe for v in df.value.get("Value", [])}
    assert "payments@2.3.2" in releases and "production" in releases
    # The event list: hex ids, newest first; opening one from the list puts it in the URL.
    at = _open(logged_in_app, Role.VIEWER, group=str(group), tab="Events")
    events = table_with(at, "Event", "Release")
    assert all(HEX.match(str(e)) for e in events["Event"])
    second = str(events["Event"].iloc[1])
    at.selectbox(key="errors_open_event").select(second).run()
    assert (at.query_params.get("event"), at.query_params.get("tab")) == (second, None)
    assert _shown_event(at) == second
    # Older/Newer walk the group's events in time order (each in the URL); the ends are
    # disabled.
    at = _open(logged_in_app, Role.VIEWER, group=str(group))
    newest = _shown_event(at)
    assert newest == str(events["Event"].iloc[0])
    assert at.button(key="errors_newer").disabled and at.button(key="errors_newest").disabled
    assert _shown_event(_click(at, "errors_older")) == second
    assert (at.query_params["group"], at.query_params["event"]) == (str(group), second)
    assert _shown_event(_click(at, "errors_newer")) == newest
    oldest = _shown_event(_click(at, "errors_oldest"))
    with demo_engine.connect() as conn:
        first = conn.execute(
            text(
                "SELECT replace(event_id::text, '-', '') FROM error_events WHERE group_id = :g"
                " ORDER BY time, event_id LIMIT 1"
            ),
            {"g": group},
        ).scalar_one()
    assert oldest == first and at.query_params["event"] == first
    assert at.button(key="errors_older").disabled
    # The frames of the stored stack trace, the in-app one marked.
    assert any("charge_deposit" in m.value and "In app" in m.value for m in at.markdown)
    # Back to the list keeps the search and drops the group.
    at = _click(_open(logged_in_app, Role.VIEWER, group=str(group), q="card"), "errors_back")
    assert dict(at.query_params) == {"q": "card"}
    assert list(table_with(at, "Status", "Error")["Error"]) == ["CardError"]
    # A group that does not exist, and an event not of this group, say so.
    missing = _open(logged_in_app, Role.VIEWER, group="999999")
    assert any("no error group #999999" in w.value for w in missing.warning)
    other = _open(logged_in_app, Role.VIEWER, group=str(group), event="0" * 32)
    assert any("is not one of this group" in w.value for w in other.warning)
    assert _shown_event(other) == newest


def test_a_responder_assigns_and_resolves_staying_on_the_group_and_tab(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    group = _card_error(demo_engine)
    at = _open(logged_in_app, Role.RESPONDER, group=str(group), tab="History")
    me = at.session_state["auth_user"].username
    at.selectbox(key=f"errors_assignee_{group}").select(me).run()
    at.button(key="errors_assign").click().run()
    assert not at.exception, at.exception
    assert (at.query_params["group"], at.query_params["tab"]) == (str(group), "History")
    assert "assigned to" in " ".join(s.value for s in at.success)
    assert f"assigned to {me}" in list(table_with(at, "What", "Who")["What"])
    at.button(key="errors_resolve").click().run()
    assert (at.query_params["group"], at.query_params["tab"]) == (str(group), "History")
    assert ":green-badge[Resolved]" in " ".join(m.value for m in at.markdown)
    with demo_engine.connect() as conn:
        row = conn.execute(select(error_groups).where(error_groups.c.id == group)).one()
        audits = set(
            conn.execute(
                select(audit_log.c.action).where(audit_log.c.target == f"error_group:{group}")
            ).scalars()
        )
    assert (row.status, row.assigned_to) == ("resolved", me)
    assert audits == {"error_group.assign", "error_group.resolve"}
    # The list shows the change at once, and assigned:me finds it.
    listed = _open(logged_in_app, Role.RESPONDER, q="assigned:me")
    assert listed.session_state["auth_user"].username != me  # another responder: not theirs
    assert "No error group matches in this range." in [i.value for i in listed.info]
    listed = _open(logged_in_app, Role.VIEWER, q=f"assigned:{me}")
    shown = table_with(listed, "Status", "Assignee")
    assert (list(shown["Status"]), list(shown["Assignee"])) == (["Resolved"], [me])


def test_viewers_get_no_actions_and_the_service_refuses_them(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    group = _card_error(demo_engine)
    at = _open(logged_in_app, Role.VIEWER, group=str(group))
    keys = {w.key for w in [*at.button, *at.selectbox]}
    assert not {k for k in keys if k and k.startswith(("errors_assign", "errors_resolve"))}
    with demo_engine.begin() as conn, pytest.raises(PermissionDenied):
        assign_group(
            conn,
            group_id=group,
            assignee=None,
            actor=user_actor("someone"),
            role=Role.VIEWER.value,
            now=clock.now() + timedelta(seconds=1),
        )
    with demo_engine.begin() as conn, pytest.raises(ValueError, match="not an active"):
        assign_group(
            conn,
            group_id=group,
            assignee="nobody-here",
            actor=user_actor("someone"),
            role=Role.ADMIN.value,
            now=clock.now(),
        )
