"""The Alert page (`/response-alert?instance=N`) through AppTest: the condition in words, the
threshold with its unit, the graph, the delivery log, silences, actions staying on the alert,
and a clear message for an unknown or absent instance."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.alerts.service import silence_create
from monitoring_core.enums import Role
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.schema import alert_instances, audit_log, metric_catalog, runbooks, silences
from tests.alerting_support import Receiver, channel, point, threshold_rule, webhook_receiver
from tests.clock_support import LONDON
from tests.ui_harness import table_with

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as found:
        yield found


def _firing_alert(engine: Engine, receiver: Receiver) -> int:
    """A firing alert on a metric measured in ms, notified to a channel that takes it and one
    that answers 500."""
    now = clock.now()  # the page's clock (set by logged_in_app)
    with engine.begin() as conn:
        conn.execute(insert(metric_catalog).values(name="checkout_latency_ms", unit="ms"))
        good = channel(conn, receiver.json_url("hook"), name="ops-hook")
        bad = channel(conn, receiver.json_url("fail"), name="pager_[bad]")
        threshold_rule(
            conn,
            now,
            alert_name="Checkout *slow*",
            notification_channels=[good, bad],
            cfg={"group_by": ["endpoint"], "duration_minutes": 0},
        )
    for seconds in (50, 30, 2):
        point(engine, now - timedelta(seconds=seconds), 500, dims={"endpoint": "/pay"})
    run_evaluation(engine, now)
    deliver_due(engine, now, public_url="http://ui.test", api_public_url="http://api.test")
    with engine.connect() as conn:
        return int(conn.execute(select(alert_instances.c.id)).scalar_one())


def _open(factory: AppFactory, role: Role, instance: str | None) -> AppTest:
    at = factory(role)
    if instance is not None:
        at.query_params["instance"] = instance
    at.run()
    at.switch_page("pages/alert.py").run()
    assert not at.exception, at.exception
    return at


def _plain(text: str) -> str:
    return text.replace("\\", "")


def _texts(at: AppTest) -> list[str]:
    return [_plain(str(m.value)) for m in [*at.markdown, *at.caption, *at.warning, *at.info]]


def _table(at: AppTest, column: str) -> list[list[str]]:
    frame = next(d.value for d in [*at.dataframe, *at.table] if column in d.value.columns)
    return frame.astype(str).values.tolist()


def test_it_shows_the_rule_in_words_the_threshold_graph_and_delivery_log(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    at = _open(logged_in_app, Role.VIEWER, str(instance_id))
    texts = _texts(at)
    assert any("Checkout *slow* · endpoint=/pay" in t for t in texts)
    assert any(
        "fires when average of checkout_latency_ms over the last 1 min is above 100 ms, "
        "one alert per endpoint" in t
        for t in texts
    )
    assert any(t.startswith("**Firing** since") and "last value 500 ms" in t for t in texts)
    facts = dict(map(tuple, _table(at, "Field")))
    assert facts["Threshold"] == "100 ms" and facts["Operator"] == "above"
    assert facts["Window"] == "1 min" and facts["One alert per"] == "endpoint"
    assert facts["Channels"] == "ops-hook, pager_[bad]"
    log = next(d.value for d in [*at.dataframe, *at.table] if "Outcome" in d.value.columns)
    outcomes = dict(zip(log["Channel"], log["Outcome"], strict=True))
    assert outcomes["ops-hook"] == "delivered"
    assert outcomes["pager_[bad]"].startswith("failed")
    assert all("500" in e for e in log[log["Channel"] == "pager_[bad]"]["Error"])
    assert (log["What"] == "firing").all() and "Person" not in log.columns  # nobody's own
    assert any("` endpoint=/pay `" in t for t in texts)  # labels, as code spans
    (chart,) = at.get("plotly_chart")
    spec = chart.proto.spec
    assert '"threshold"' in spec and '"firing"' in spec
    assert '"%-d %b"' in spec  # day ticks as 27 Nov, the business's order
    assert "Acknowledge" not in [b.label for b in at.button]  # viewers only look


def test_it_says_which_silence_covers_the_alert(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    now = clock.now()
    with engine.begin() as conn:
        silence_id = silence_create(
            conn,
            matchers=[{"name": "endpoint", "value": "/pay", "is_regex": False}],
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=1),
            reason="deploy",
            actor="user:ops",
            role="admin",
            now=now,
        )
    at = _open(logged_in_app, Role.VIEWER, str(instance_id))
    assert any(
        f"Silenced by silence #{silence_id}: deploy (by ops, until" in _plain(w.value)
        for w in at.warning
    )


def test_an_acknowledge_stays_on_the_same_alert(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    at = _open(logged_in_app, Role.RESPONDER, str(instance_id))
    at.button(key="alert_ack").click().run()
    assert not at.exception, at.exception
    with engine.connect() as conn:
        status = conn.execute(select(alert_instances.c.status)).scalar_one()
        audit = conn.execute(select(audit_log.c.action)).scalars().all()
    assert status == "acknowledged" and "alert.acknowledge" in audit
    assert any("Acknowledge done" in s.value for s in at.success)
    assert at.query_params["instance"] == str(instance_id)  # the rerun kept the address
    texts = _texts(at)
    assert any(t.startswith("**Acknowledged** since") and " by responder-" in t for t in texts)
    assert not any("user:" in t for t in texts)  # who acted, in words (fmt.actor)
    assert any("Checkout *slow* · endpoint=/pay" in t for t in texts)
    assert at.button(key="alert_ack").disabled


def test_a_responder_silences_from_here_with_a_preview(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    at = _open(logged_in_app, Role.RESPONDER, str(instance_id))
    # alertname and the alert's own dimension are ticked by default
    assert any("Covers 1 active alert now: #" in _plain(c.value) for c in at.caption)
    at.text_input(key=f"sl_reason_{instance_id}").input("known issue")
    at.button(key=f"sl_add_{instance_id}").click().run()
    assert not at.exception, at.exception
    with engine.connect() as conn:
        (row,) = conn.execute(select(silences.c.id, silences.c.matchers, silences.c.reason)).all()
    assert row.reason == "known issue"
    assert {(m["name"], m["value"]) for m in row.matchers} == {
        ("alertname", "Checkout *slow*"),
        ("endpoint", "/pay"),
    }
    assert any(f"Silenced by silence #{row.id}" in _plain(w.value) for w in at.warning)


@pytest.mark.parametrize("asked", ["999999999", "abc", "1' OR 1=1", None])
def test_an_unknown_or_absent_instance_gets_a_clear_message(
    engine: Engine, logged_in_app: AppFactory, asked: str | None
) -> None:
    at = _open(logged_in_app, Role.VIEWER, asked)
    if asked is None:
        assert any("Pick an alert by its number" in i.value for i in at.info)
    else:
        assert any("There is no alert" in _plain(w.value) for w in at.warning)
    assert at.number_input(key="alert_pick") is not None


def test_each_card_on_the_alerts_page_links_to_its_alert(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    at = logged_in_app(Role.VIEWER)
    at.run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception, at.exception
    links = [e.proto for e in at.get("page_link") if e.proto.label == f"Open alert #{instance_id}"]
    assert [(p.page, p.query_string) for p in links] == [
        ("response-alert", f"instance={instance_id}")
    ]


def test_it_links_the_incident_and_lists_the_runbook_steps(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    from monitoring_core.incidents.store import open_incident

    instance_id = _firing_alert(engine, receiver)
    now = clock.now()
    with engine.begin() as conn:
        incident = open_incident(
            conn,
            title="Checkout down",
            severity="SEV2",
            affected_services=["checkout"],
            source="alert",
            created_by="test",
            now=now,
            alert_instance_id=instance_id,
        )
        conn.execute(
            insert(runbooks).values(
                title="Restart the [checkout] pods",
                alert_rule_id=conn.execute(
                    select(alert_instances.c.alert_configuration_id)
                ).scalar(),
                steps=[
                    {"title": "Drain traffic", "kind": "manual"},
                    {"title": "Restart", "kind": "http"},
                ],
            )
        )
    at = _open(logged_in_app, Role.VIEWER, str(instance_id))
    links = [e.proto for e in at.get("page_link") if e.proto.page == "response-incidents"]
    assert [p.query_string for p in links] == [f"incident={incident['id']}"]
    texts = _texts(at)
    assert any("Runbook:** Restart the [checkout] pods" in t for t in texts)
    assert any("1. Drain traffic (manual)\n2. Restart (http)" in t for t in texts)


def test_an_absence_alert_gives_its_values_in_minutes(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    """An absence rule's value is the minutes since the last point: "6.3 min" in the history,
    not a bare "6.3"."""
    now = clock.now()
    with engine.begin() as conn:
        threshold_rule(
            conn,
            now,
            alert_name="Heartbeat",
            cfg={"type": "absence", "metric": "heartbeat", "window_minutes": 5},
        )
    point(engine, now - timedelta(minutes=6, seconds=30), 1, metric="heartbeat")
    run_evaluation(engine, now)
    with engine.connect() as conn:
        instance_id = int(conn.execute(select(alert_instances.c.id)).scalar_one())
    at = _open(logged_in_app, Role.VIEWER, str(instance_id))
    values = [v for v in table_with(at, "Change", "Value")["Value"] if v]
    assert len(values) == 1 and re.fullmatch(r"6\.\d+ min", values[0]), values


def test_an_anomaly_alert_says_its_window_and_draws_the_hour_so_far_at_every_step(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    """An anomaly rule's page: its window is the hour so far against the same minutes of past
    weeks, and its graph has the value the engine compared at each step (it used to draw the
    one current hour, a line between two points)."""
    from monitoring_core.alerts import detail
    from monitoring_core.rollups import run_rollups
    from tests.alerting_support import partitions_around
    from tests.rollup_fixtures import add_points, add_series

    now = clock.now()
    minutes = [now - timedelta(minutes=m, seconds=30) for m in range(180)]
    with engine.begin() as conn:
        for weeks_back in (0, 1, 2):
            partitions_around(engine, now - timedelta(days=7 * weeks_back))
        series = add_series(conn, "orders", {})
        rows = [(t - timedelta(days=7 * k), 10.0 + k) for t in minutes for k in (1, 2)]
        add_points(conn, series, [*rows, *((t, 100.0) for t in minutes)], ingested_at=now)
        threshold_rule(conn, now, alert_name="Orders odd",
                       cfg={"type": "anomaly", "metric": "orders", "weeks": 2,
                            "min_baseline": 2, "duration_minutes": 0})  # fmt: skip
    run_rollups(engine, now, safety_lag=timedelta(0))
    run_evaluation(engine, now)
    with engine.connect() as conn:
        instance_id = int(conn.execute(select(alert_instances.c.id)).scalar_one())
        drawn = detail.condition_series(
            conn, instance_id=instance_id, start=now - timedelta(hours=2), end=now, tz=LONDON
        )
    assert len(drawn["points"]) == 121 and {v for _t, v in drawn["points"]} == {100.0}
    assert drawn["note"] == "the hour's value so far"
    at = _open(logged_in_app, Role.VIEWER, str(instance_id))
    facts = dict(map(tuple, _table(at, "Field")))
    assert facts["Window"] == "the hour so far"
    assert facts["Baseline"] == "the same minutes of the past 2 weeks (at least 2 with data)"
    assert any("this hour so far is more than 3 robust standard deviations" in t
               for t in _texts(at))  # fmt: skip
