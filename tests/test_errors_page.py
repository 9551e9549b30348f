"""The Errors page through AppTest: trend, groups, detail, and responder actions by role."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.schema import error_group_changes, error_groups
from ui.resource_charts import CLOCK_LABELS

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]
PAGE = "pages/errors.py"


def _seed(engine: Engine) -> None:
    now = clock.now() - timedelta(minutes=3)  # the page's clock (set by logged_in_app)
    base = {"level": "api", "time": now, "trace_id": "t-1"}
    events = [
        ErrorInput(error_type="CardError", message=f"card 4242 4242 4242 4242 declined for {i}",
                   service_name="payments", user_id=f"u{i}", organization_id="o1",
                   stack_trace='File "pay.py", line 3, in charge\n  token=abc123secret',
                   tags={"region": "uk"}, **base)  # type: ignore[arg-type]
        for i in range(3)
    ] + [ErrorInput(error_type="TypeError", message="x is undefined", service_name="web",
                    **{**base, "level": "frontend"})]  # type: ignore[arg-type]  # fmt: skip
    with engine.begin() as conn:
        ingest_errors(conn, events, now=now, tz=ZoneInfo("Europe/London"))


def _open_only_group(at: AppTest) -> None:
    """Open the one group listed (as picking it does: `?group=N` in the URL)."""
    (group,) = at.selectbox(key="errors_open_group").options
    at.selectbox(key="errors_open_group").select(group).run()
    assert not at.exception, at.exception
    assert at.query_params["group"] == group.split()[0].lstrip("#")


def _open(factory: AppFactory, role: Role) -> AppTest:
    at = factory(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_it_shows_trend_groups_and_a_scrubbed_detail(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _seed(engine)
    at = _open(logged_in_app, Role.VIEWER)
    assert [t.value for t in at.title] == ["Errors"]
    assert [m.value for m in at.metric][:3] == ["4", "2", "3"]
    groups = at.dataframe[0].value
    assert sorted(groups["Error"]) == ["CardError", "TypeError"]
    (trend,) = at.get("vega_lite_chart")  # one trend drawn, by layer
    spec = json.loads(trend.proto.spec)
    # on the 24-hour clock (not Vega's `02 PM`), each bar as wide as its bucket
    assert spec["encoding"]["x"]["axis"]["labelExpr"] == CLOCK_LABELS
    assert spec["encoding"]["x2"]["field"] == "until"
    assert spec["encoding"]["color"]["title"] == "Layer"
    at.segmented_control(key="errors_trend_by").set_value("service").run()
    assert at.query_params["by"] == "service" and len(at.get("vega_lite_chart")) == 1
    assert json.loads(at.get("vega_lite_chart")[0].proto.spec)["encoding"]["color"]["title"] == (
        "Service"
    )
    at.selectbox(key="errors_service").select("payments").run()
    assert at.query_params["service"] == "payments"
    assert list(at.dataframe[0].value["Error"]) == ["CardError"]
    _open_only_group(at)
    code = " ".join(c.value for c in at.code)
    assert "token=[REDACTED]" in code and "abc123secret" not in code
    assert "[REDACTED]" in " ".join(t.value for t in at.text)
    actions = {"errors_resolve", "errors_ignore", "errors_reopen", "errors_assign"}
    assert not actions & {b.key for b in at.button}  # viewers cannot change groups


def test_it_lets_a_responder_resolve_and_reopen(engine: Engine, logged_in_app: AppFactory) -> None:
    _seed(engine)
    at = _open(logged_in_app, Role.RESPONDER)
    at.selectbox(key="errors_service").select("payments").run()
    _open_only_group(at)
    assert {b.key for b in at.button} >= {"errors_resolve", "errors_ignore"}
    at.text_input(key="errors_release").input("payments@2.0.0")
    at.button(key="errors_resolve").click().run()
    assert not at.exception, at.exception
    assert "resolve done" in " ".join(s.value for s in at.success)
    with engine.connect() as conn:
        group = conn.execute(
            select(error_groups).where(error_groups.c.error_type == "CardError")
        ).one()
        actors = conn.execute(select(error_group_changes.c.actor)).scalars().all()
    assert (group.status, group.resolved_in_release) == ("resolved", "payments@2.0.0")
    assert any(a and a.startswith("user:responder-") for a in actors)
    at.button(key="errors_reopen").click().run()
    with engine.connect() as conn:
        status = conn.execute(
            select(error_groups.c.status).where(error_groups.c.id == group.id)
        ).scalar_one()
    assert status == "unresolved"


def test_it_says_so_when_there_are_no_errors(engine: Engine, logged_in_app: AppFactory) -> None:
    at = _open(logged_in_app, Role.VIEWER)
    assert "No error group matches in this range." in [i.value for i in at.info]
