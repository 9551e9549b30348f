"""No data, honestly: the per-rule choice, when the data stopped, no page for data that has not
arrived yet, and no data kept apart from firing and pending (pure, then one real cycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select
from streamlit.testing.v1 import AppTest

from monitoring_core.alerts.engine import AlertState, Point, evaluate
from monitoring_core.alerts.last_seen import last_point
from monitoring_core.alerts.queries import active_counts, split_active
from monitoring_core.alerts.rules import Rule, RuleInvalid, parse_condition
from monitoring_core.alerts.service import rule_update
from monitoring_core.alerts.store import active_since, list_active_alerts
from monitoring_core.enums import Role
from monitoring_core.flows.alert_cycle import run_evaluation, running_since
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    notification_outbox,
    worker_heartbeats,
)
from tests.alerting_support import channel, partitions_around, point, threshold_rule
from tests.rollup_fixtures import add_series
from ui import fmt

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday: no calendar effects
MIN = timedelta(minutes=1)
OLD = NOW - timedelta(days=18)  # an episode long ago, like the demo's history


def rule(**cfg: Any) -> Rule:
    base = {"type": "threshold", "metric": "m", "value": 10, "window_minutes": 5}
    return Rule(1, "r", "critical", parse_condition({**base, **cfg}))


FIRING = AlertState("firing", first_triggered_at=OLD, last_triggered_at=NOW - MIN, trigger_count=3)
RESOLVED = AlertState("resolved", first_triggered_at=OLD, resolved_at=OLD + timedelta(hours=1))
NONE = AlertState()


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("cfg", "mode"),
    [
        ({}, "no_data"),  # Grafana's default: NoData is its own state
        ({"no_data_state": "ok"}, "ok"),
        ({"no_data_state": "alerting"}, "alerting"),
        ({"no_data_state": "keep_last"}, "keep_last"),
        ({"no_data": "keep_state"}, "keep_last"),  # the older key and spelling
        ({"no_data": "ok", "no_data_state": "alerting"}, "alerting"),
    ],
)
def test_it_reads_the_no_data_choice(cfg: dict, mode: str) -> None:
    assert rule(**cfg).condition.no_data == mode


@pytest.mark.parametrize("bad", ["panic", 3, ["ok"]])
def test_it_refuses_an_unknown_no_data_choice(bad: Any) -> None:
    with pytest.raises(RuleInvalid) as caught:
        rule(no_data_state=bad)
    assert caught.value.problems[0]["field"] == "condition_config.no_data_state"


# ---------------------------------------------------------------- one evaluation without data
@pytest.mark.parametrize(
    ("cfg", "before", "seen", "status", "notify"),
    [
        # default: its own state, paged once the rule has seen data before
        ({}, RESOLVED, True, "no_data", "no_data"),
        ({}, FIRING, True, "no_data", "no_data"),
        ({}, NONE, True, "no_data", "no_data"),
        # data that has not arrived yet: recorded, never paged
        ({}, NONE, False, "no_data", None),
        ({}, RESOLVED, False, "no_data", None),
        # ok: a firing alert resolves (and says so), a quiet one stays quiet
        ({"no_data_state": "ok"}, FIRING, True, "resolved", "resolved"),
        ({"no_data_state": "ok"}, NONE, False, None, None),
        # alerting: no data is a breach, paged even before any data (that is its purpose)
        ({"no_data_state": "alerting"}, NONE, False, "firing", "firing"),
        ({"no_data_state": "alerting"}, RESOLVED, True, "firing", "firing"),
        # keep_last: nothing moves
        ({"no_data_state": "keep_last"}, FIRING, True, "firing", None),
        ({"no_data_state": "keep_last"}, RESOLVED, True, "resolved", None),
    ],
)
def test_it_follows_the_rules_no_data_choice(
    cfg: dict, before: AlertState, seen: bool, status: str | None, notify: str | None
) -> None:
    notified = replace(before, last_notified_at=NOW - MIN) if before.status == "firing" else before
    decision = evaluate(rule(**cfg), [], notified, NOW, tz=TZ, seen_data=seen)
    assert (decision.state.status, decision.notify) == (status, notify)


@pytest.mark.parametrize(
    ("series", "stopped"),
    [
        ([], NOW - 5 * MIN),  # nothing in the 5-minute window: stopped at least that long ago
        ([Point(NOW - 9 * MIN, 3.0)], NOW - 9 * MIN),  # the newest point tells exactly
        ([Point(NOW - 9 * MIN, 3.0), Point(NOW + MIN, 3.0)], NOW - 9 * MIN),  # future ignored
    ],
)
def test_it_ages_no_data_from_when_the_data_stopped(series: list, stopped: datetime) -> None:
    decision = evaluate(rule(), series, RESOLVED, NOW, tz=TZ)
    assert decision.state.no_data_since == stopped
    assert decision.state.first_triggered_at == OLD  # the old episode is no age for no data
    alert = {"status": "no_data", **vars(decision.state)}
    assert active_since(alert) == stopped


def test_it_keeps_the_stop_time_while_no_data_lasts_and_drops_it_when_data_returns() -> None:
    r = rule()
    first = evaluate(r, [], RESOLVED, NOW, tz=TZ).state
    later = evaluate(r, [], first, NOW + 30 * MIN, tz=TZ)
    assert (later.state.no_data_since, later.notify) == (NOW - 5 * MIN, None)
    back = evaluate(r, [Point(NOW + 31 * MIN, 1.0)], later.state, NOW + 31 * MIN, tz=TZ)
    assert (back.state.status, back.state.no_data_since) == ("resolved", None)


def test_it_absence_rules_page_without_ever_having_seen_data() -> None:
    heartbeat = Rule(1, "hb", "high", parse_condition({"type": "absence", "metric": "m"}))
    decision = evaluate(heartbeat, [], NONE, NOW, tz=TZ, seen_data=False)
    assert (decision.state.status, decision.notify) == ("firing", "firing")


SEEN = {
    "queue_depth": [
        ({"queue": "payment_webhooks", "host": "a"}, NOW - 30 * MIN),
        ({"queue": "payment_webhooks", "host": "b"}, NOW - 20 * MIN),
        ({"queue": "photos", "host": "a"}, NOW - MIN),
    ]
}


@pytest.mark.parametrize(
    ("metric", "filters", "dims", "expected"),
    [
        ("queue_depth", {"queue": "payment_webhooks"}, {}, NOW - 20 * MIN),  # newest of two
        ("queue_depth", {"queue": "payment_webhooks"}, {"host": "a"}, NOW - 30 * MIN),
        ("queue_depth", {}, {}, NOW - MIN),
        ("queue_depth", {"queue": "emails"}, {}, None),
        ("db_connections", {}, {}, None),
    ],
)
def test_it_finds_the_newest_point_of_the_matching_series(
    metric: str, filters: dict, dims: dict, expected: datetime | None
) -> None:
    assert last_point(SEEN, metric, filters, dims) == expected


# ---------------------------------------------------------------- listing and counting
def _alert(status: str, severity: str = "critical") -> dict:
    return {"status": status, "severity": severity}


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (
            ["firing", "no_data", "pending", "acknowledged", "no_data"],
            {"firing": 1, "pending": 1, "acknowledged": 1, "no_data": 2, "critical_firing": 1},
        ),
        (["no_data"], {"firing": 0, "pending": 0, "no_data": 1, "critical_firing": 0}),
    ],
)
def test_it_never_counts_no_data_as_firing_or_pending(statuses: list, expected: dict) -> None:
    alerts = [_alert(s) for s in statuses]
    counts = active_counts(alerts)
    assert {k: counts[k] for k in expected} == expected
    assert [a["status"] for a in split_active(alerts)["no_data"]] == ["no_data"] * expected[
        "no_data"
    ]


# ---------------------------------------------------------------- one cycle on the real DB
@pytest.fixture
def db(engine: Engine) -> Engine:
    partitions_around(engine, NOW)
    return engine


def _cycle(engine: Engine, at: datetime) -> None:
    run_evaluation(engine, at, tz=TZ, public_url="http://ui.test")


def _outbox_kinds(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(notification_outbox.c.kind)).scalars())


def test_it_pages_no_data_only_after_the_rule_has_seen_data(db: Engine) -> None:
    with db.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        waiting = threshold_rule(conn, NOW, alert_name="Never fed", notification_channels=[ch])
        fed = threshold_rule(
            conn, NOW, alert_name="Fed", notification_channels=[ch], cfg={"metric": "fed_ms"}
        )
    point(db, NOW - timedelta(seconds=10), 5, metric="fed_ms")
    _cycle(db, NOW)  # "Fed" sees data (fine); "Never fed" has none: listed, not paged
    _cycle(db, NOW + 5 * MIN)  # "Fed"'s data stopped
    assert _outbox_kinds(db) == ["no_data"]
    with db.connect() as conn:
        active = {a["alert_name"]: a for a in list_active_alerts(conn)}
        seen = dict(conn.execute(select(alert_rules.c.id, alert_rules.c.data_seen_at)).all())
    assert {name: a["status"] for name, a in active.items()} == {
        "Never fed": "no_data",
        "Fed": "no_data",
    }
    assert seen == {waiting: None, fed: NOW}
    # when the data stopped: its newest point; with none stored, the empty window's start
    assert active["Fed"]["no_data_since"] == NOW - timedelta(seconds=10)
    assert active["Never fed"]["no_data_since"] == NOW - MIN
    assert active["Never fed"]["data_seen_at"] is None
    assert active_counts(list(active.values()))["firing"] == 0


def _seen(engine: Engine, rule_id: int) -> datetime | None:
    with engine.connect() as conn:
        query = select(alert_rules.c.data_seen_at).where(alert_rules.c.id == rule_id)
        return conn.execute(query).scalar()


def test_it_waits_for_data_again_after_the_rule_is_re_enabled(db: Engine) -> None:
    with db.begin() as conn:
        rule_id = threshold_rule(conn, NOW)
    point(db, NOW - timedelta(seconds=10), 5)
    _cycle(db, NOW)
    assert _seen(db, rule_id) == NOW
    with db.begin() as conn:
        body = {"is_enabled": True}
        rule_update(conn, rule_id=rule_id, body=body, actor="user:ann", role="admin", now=NOW)
    assert _seen(db, rule_id) is None
    _cycle(db, NOW + 5 * MIN)  # no data since: recorded, not paged
    assert _outbox_kinds(db) == []


# ---------------------------------------------------------------- the Alerts page
def test_it_lists_no_data_apart_on_the_alerts_page_aged_from_when_data_stopped(
    engine: Engine, now: datetime, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    partitions_around(engine, now)
    with engine.begin() as conn:
        fed = threshold_rule(conn, now, alert_name="Payment webhooks backing up")
        threshold_rule(conn, now, alert_name="Never fed", cfg={"metric": "nothing_ms"})
        # an episode long ago, as the demo's history leaves behind
        conn.execute(
            insert(alert_instances).values(
                alert_configuration_id=fed,
                status="resolved",
                severity="high",
                first_triggered_at=now - timedelta(days=18),
                resolved_at=now - timedelta(days=18),
            )
        )
    point(engine, now - 20 * MIN - timedelta(seconds=30), 5)
    _cycle(engine, now - 20 * MIN)  # sees data
    _cycle(engine, now - 10 * MIN)  # the data stopped: nothing in the last minute
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["No data"]
    lines = [m.value for m in at.markdown if "** — " in m.value]  # alert cards, not rules
    assert len(lines) == 2
    stopped = fmt.when(now - 20 * MIN - timedelta(seconds=30), ZoneInfo("Europe/London"), now)
    assert any(f"no data for 20 min (since {stopped})" in line for line in lines)
    assert any("waiting for its first data" in line for line in lines)
    assert not any(" h " in line for line in lines)  # was "no_data for 442 h 44 min"
    assert any(c.value.startswith("0 firing") for c in at.caption)


def test_it_lets_an_admin_pick_what_no_data_means_for_a_new_rule(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    with engine.begin() as conn:  # a rule names a known signal: a stored metric here
        add_series(conn, "queue_depth", {"queue": "emails"})
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page("pages/alerts.py").run()
    at.button_group(key="url_tab").set_value("Rules").run()
    at.selectbox(key="new_(blank)_signal").select("queue_depth").run()
    at.text_input(key="new_(blank)_name").input("Queue stuck")
    at.selectbox(key="new_(blank)_agg").select("max")
    at.number_input(key="new_(blank)_value").set_value(30)
    at.selectbox(key="new_(blank)_no_data").select("ok")
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception
    with engine.connect() as conn:
        (saved,) = conn.execute(select(alert_rules.c.condition_config)).scalars()
    assert {k: saved[k] for k in ("metric", "aggregation", "value", "no_data_state")} == {
        "metric": "queue_depth", "aggregation": "max", "value": 30, "no_data_state": "ok",
    }  # fmt: skip


def _worker(
    engine: Engine, started: datetime, last_seen: datetime, name: str = "w1", stopping: bool = False
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(worker_heartbeats).values(
                worker_id=name,
                hostname="h",
                pid=1,
                started_at=started,
                last_seen=last_seen,
                status={"jobs": {}, "stopping": stopping},
            )
        )


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        ([], None),  # a cycle run by hand: no constraint
        ([("w1", NOW - 5 * MIN, NOW)], NOW - 5 * MIN),
        # two live workers: evaluation has run since the older one started
        ([("w1", NOW - 5 * MIN, NOW), ("w2", NOW - 90 * MIN, NOW)], NOW - 90 * MIN),
        # a worker gone for 10 minutes is not running
        ([("w1", NOW - 5 * MIN, NOW), ("w2", NOW - 90 * MIN, NOW - 10 * MIN)], NOW - 5 * MIN),
        # nor one that said it was stopping (a restart a moment ago)
        ([("w1", NOW - MIN, NOW), ("w0", NOW - 90 * MIN, NOW - MIN, True)], NOW - MIN),
    ],
)
def test_it_knows_since_when_evaluation_has_run(
    db: Engine, workers: list, expected: datetime | None
) -> None:
    for name, started, seen, *stopping in workers:
        _worker(db, started, seen, name, stopping=bool(stopping))
    with db.connect() as conn:
        assert running_since(conn, NOW) == expected


def test_it_does_not_page_at_start_up_for_data_that_stopped_before_it(db: Engine) -> None:
    with db.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        rule_id = threshold_rule(conn, NOW, notification_channels=[ch])
        # seen by an earlier run of the worker, 18 days ago; its data stopped then
        conn.execute(alert_rules.update().values(data_seen_at=OLD))
    _worker(db, started=NOW - MIN, last_seen=NOW)  # the worker just started
    _cycle(db, NOW)
    assert _outbox_kinds(db) == []  # listed as no data, not paged
    point(db, NOW + MIN - timedelta(seconds=10), 5)
    _cycle(db, NOW + MIN)  # data arrives: seen since the start
    assert _seen(db, rule_id) == NOW + MIN
    _cycle(db, NOW + 5 * MIN)  # and stops: that is news
    assert _outbox_kinds(db) == ["no_data"]
