"""Dashboards (#17 item 5): panels saved per team, opened by URL, drawn from the metric store;
only responders and admins change them (audited); the configuration file carries them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import yaml
from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from monitoring_core import dashboards
from monitoring_core.config_io.apply import apply_config, export_config
from monitoring_core.config_io.document import ConfigInvalid
from monitoring_core.enums import Role
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log
from monitoring_core.schema import dashboards as dashboards_table
from tests.rollup_fixtures import roll_up_now

AppFactory = Callable[[Role | None], AppTest]
PANEL = {"metric": "queue_depth", "aggregation": "max", "group_by": ["job"], "chart": "line"}


def _push(engine: Engine, now: datetime) -> None:
    points = [
        MetricPoint("queue_depth", float(10 * job + minute % 3), now - timedelta(minutes=minute),
                    {"job": f"worker{job}"}, "prometheus")
        for job in (1, 2)
        for minute in range(1, 60)
    ]  # fmt: skip
    with engine.begin() as conn:
        store_points(conn, points)
    roll_up_now(engine)


@pytest.mark.parametrize(
    ("panels", "message"),
    [
        ({}, "panels: must be a list"),
        ([{"metric": ""}], "panels[0].metric: must not be empty"),
        ([{"metric": "x", "chart": "pie"}], "panels[0].chart"),
        ([{"metric": "x", "aggregation": "median"}], "panels[0].aggregation"),
        ([{"metric": "x", "colour": "red"}], "unknown field(s) colour"),
        ([{"metric": "x\x00"}], "panels[0].metric"),
        ([{"metric": "x"}] * 25, "at most 24"),
    ],
)
def test_bad_panels_are_refused_naming_the_field(panels: object, message: str) -> None:
    with pytest.raises(dashboards.DashboardInvalid, match=re.escape(message)):
        dashboards.validate_panels(panels)


def test_saving_is_for_responders_audited_and_names_are_unique(
    engine: Engine, now: datetime
) -> None:
    with engine.begin() as conn:
        with pytest.raises(PermissionDenied):
            dashboards.save_dashboard(conn, dashboard_id=None, name="Ops", team="", panels=[],
                                      actor="v", role="viewer", now=now)  # fmt: skip
        board = dashboards.save_dashboard(conn, dashboard_id=None, name=" Ops ", team="SRE",
                                          panels=[PANEL], actor="r", role="responder", now=now)  # fmt: skip
        with pytest.raises(dashboards.DashboardInvalid, match="exists"):
            dashboards.save_dashboard(conn, dashboard_id=None, name="Ops", team="", panels=[],
                                      actor="r", role="responder", now=now)  # fmt: skip
        saved = dashboards.get_dashboard(conn, board)
        assert saved is not None and saved["name"] == "Ops" and saved["team"] == "SRE"
        assert saved["panels"] == [{**PANEL, "title": "queue_depth", "filters": {}}]
        assert dashboards.list_dashboards(conn, team="SRE")[0]["panel_count"] == 1
        assert dashboards.delete_dashboard(
            conn, dashboard_id=board, actor="r", role="responder", now=now
        )
        actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars().all()
    assert actions == ["dashboard.save", "dashboard.delete"]


def test_a_dashboard_opens_from_its_url_and_draws_its_panels(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _push(engine, now)
    with engine.begin() as conn:
        dashboards.save_dashboard(conn, dashboard_id=None, name="First", team="", panels=[],
                                  actor="r", role="responder", now=now)  # fmt: skip
        board = dashboards.save_dashboard(
            conn, dashboard_id=None, name="Queues", team="Platform", actor="r", role="responder",
            now=now, panels=[PANEL, {**PANEL, "chart": "stat", "group_by": [], "title": "Peak"},
                             {**PANEL, "chart": "table"}],
        )  # fmt: skip
    at = logged_in_app(Role.VIEWER)
    at.query_params["dashboard"] = str(board)
    at = at.run().switch_page("pages/dashboards.py").run()
    assert not at.exception
    assert at.selectbox(key="dash_pick").value == board
    assert len(at.get("vega_lite_chart")) == 1
    assert [m.value for m in at.metric] == ["22"]  # max of worker2's 20..22
    assert at.dataframe[0].value["Latest"].tolist()
    assert not [b for b in at.button if b.label == "Add this panel"]  # viewers change nothing


def test_a_responder_adds_and_removes_a_panel(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _push(engine, now)
    at = logged_in_app(Role.RESPONDER).run().switch_page("pages/dashboards.py").run()
    at.text_input(key="dash_new_name").input("Queues")
    at = at.button(key="dash_create").click().run()
    assert not at.exception
    board = int(at.query_params["dashboard"])
    at.selectbox(key="dash_metric").select("queue_depth").run()
    at.selectbox(key="dash_chart").select("bar").run()
    at = next(b for b in at.button if b.label == "Add this panel").click().run()
    assert not at.exception
    with engine.connect() as conn:
        saved = dashboards.get_dashboard(conn, board)
    assert saved is not None and [p["chart"] for p in saved["panels"]] == ["bar"]
    assert len(at.get("vega_lite_chart")) == 1
    at = at.button(key="dash_rm_yes").click().run()
    with engine.connect() as conn:
        assert dashboards.get_dashboard(conn, board)["panels"] == []  # type: ignore[index]
        assert conn.execute(select(func.count()).select_from(dashboards_table)).scalar() == 1


def test_the_configuration_file_carries_dashboards_both_ways(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        dashboards.save_dashboard(conn, dashboard_id=None, name="Queues", team="Platform",
                                  panels=[PANEL], actor="r", role="responder", now=now)  # fmt: skip
        exported, _ = export_config(conn, now=now)
    doc = yaml.safe_load(exported)
    assert doc["dashboards"] == [
        {
            "name": "Queues",
            "team": "Platform",
            "panels": [{**PANEL, "title": "queue_depth", "filters": {}}],
        }
    ]
    with engine.begin() as conn:
        conn.execute(dashboards_table.delete())
        changes = apply_config(conn, exported, env={}, actor="system:test", now=now)
        assert [(c.section, c.key) for c in changes] == [("dashboards", "Queues")]
        assert apply_config(conn, exported, env={}, actor="system:test", now=now) == []
        again, _ = export_config(conn, now=now)
    assert again == exported
    bad = exported.replace("chart: line", "chart: pie")
    with engine.begin() as conn, pytest.raises(ConfigInvalid, match=r"line \d+.*chart"):
        apply_config(conn, bad, env={}, actor="system:test", now=now)


def test_every_demo_panel_draws_from_the_demo_gauges(engine: Engine, now: datetime) -> None:
    from monitoring_core import metrics_query
    from monitoring_core.demo import dashboards as demo_boards
    from monitoring_core.demo import loader_rng, performance
    from monitoring_core.partitions import ensure_partitions
    from monitoring_core.timerange import TimeRange

    with engine.begin() as conn:
        ensure_partitions(conn, start=now - timedelta(days=1), end=now + timedelta(days=1))
        performance.load(conn, days=1, now=now, rng=loader_rng(performance))
        assert demo_boards.load(conn, days=1, now=now, rng=loader_rng(demo_boards)) == {
            "dashboards": 2
        }
    roll_up_now(engine)
    tr = TimeRange(now - timedelta(hours=24), now)
    with engine.connect() as conn:
        boards = dashboards.list_dashboards(conn)
        assert {b["team"] for b in boards} == {"Platform", "Payments"}
        for board in boards:
            for panel in board["panels"]:
                frame = metrics_query.query_metric(
                    conn, metric_name=panel["metric"], aggregation=panel["aggregation"],
                    interval="15m", tr=tr, group_by=panel["group_by"], filters=panel["filters"],
                )  # fmt: skip
                assert not frame.empty, panel["title"]
