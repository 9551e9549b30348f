"""The backtest against the live engine for pattern, anomaly, PromQL and composite rules.

As `test_backtest_live.py` (whose history of latencies, a heartbeat and API timings this
test reuses), for the kinds that do not read metric points by the minute: pattern rules on
error events (bursts of card declines, a burst of photo errors, a checkout service that goes
quiet), anomaly rules on the hourly rollups of an `orders` metric against the same hours of
two past weeks (a spike of each region, one hour with too little history, every hour's first
step, with no current value yet, checking the hour just ended), PromQL rules, and composite rules over children of every
kind (a PromQL child and a disabled child tell a cycle nothing). The live engine runs one
committed cycle per minute for two and a half hours; the backtest replays the same range:
the same status changes and notifications, and the same with nothing skipped. Then cycles
every 15 s against the backtest at its default step (15 s for raw points, events and PromQL:
breaches shorter than a minute included), and at 15 s for anomaly and composite rules across
an hour's start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select, text, update

from monitoring_core.alerts.backtest import backtest, steps_of
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule, list_alert_history
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import alert_instances, alert_rules, notification_outbox
from tests.alerting_support import channel, partitions_around, threshold_rule
from tests.rollup_fixtures import add_points, add_series
from tests.test_backtest_live import NOW, TZ, _history, firing_steps, ordered

START = NOW - timedelta(minutes=150)  # 09:30 UTC: hours 09, 10 and 11, and 12:00
MIN, WEEK = timedelta(minutes=1), timedelta(days=7)
ANOMALY = {"type": "anomaly", "metric": "orders", "weeks": 2, "min_baseline": 2}

CHILDREN: dict[str, dict[str, Any]] = {
    "child slow a": {"metric": "latency_ms", "filters": {"region": "a"}, "value": 120,
                     "window_minutes": 3},
    "child slow b": {"metric": "latency_ms", "filters": {"region": "b"}, "value": 110,
                     "window_minutes": 2},
    "child heartbeat": {"type": "absence", "metric": "heartbeat", "window_minutes": 4},
    "child promql": {"type": "promql", "expr": "avg_over_time(latency_ms[3m]) > 110"},
    "child disabled": {"metric": "latency_ms", "value": 1, "window_minutes": 3},
}  # fmt: skip
RULES: dict[str, dict[str, Any]] = {
    "payment errors by type": {"type": "pattern", "filter": {"service": "payments"},
                               "group_by": ["error_type"], "operator": "greater_than_or_equal",
                               "value": 3, "window_minutes": 5, "expire_minutes": 20},
    "photo error burst": {"type": "pattern", "filter": {"service": "photos"},
                          "operator": "greater_than", "value": 4, "window_minutes": 2},
    "checkout errors stop": {"type": "pattern", "filter": {"service": "checkout"},
                             "operator": "less_than", "value": 1, "window_minutes": 10,
                             "duration_minutes": 2},
    "orders anomaly by region": {**ANOMALY, "group_by": ["region"], "duration_minutes": 2,
                                 "expire_minutes": 30},
    "orders b max above": {**ANOMALY, "aggregation": "max", "filters": {"region": "b"},
                           "direction": "above"},
    "orders a p95": {**ANOMALY, "aggregation": "p95", "filters": {"region": "a"},
                     "no_data_state": "keep_last"},
    "promql slow regions": {"type": "promql", "expr": "avg_over_time(latency_ms[3m]) > 110",
                            "duration_minutes": 2},
    "promql heartbeat": {"type": "promql", "expr": "absent_over_time(heartbeat[4m])"},
    # a threshold whose data starts and stops: the minutes without data are skipped too
    "heartbeat below half": {"metric": "heartbeat", "aggregation": "min", "operator": "less_than",
                          "value": 0.5, "window_minutes": 2},
}  # fmt: skip
COMPOSITES = {  # name -> (logic, children by name)
    "slow a and slow b": ("and", ["child slow a", "child slow b"]),
    "payments or anomaly": ("or", ["payment errors by type", "orders anomaly by region"]),
    "promql and slow a": ("and", ["child promql", "child slow a"]),
    "disabled or photos": ("or", ["child disabled", "photo error burst"]),
    "composite of composite": ("or", ["slow a and slow b", "child heartbeat"]),
}


def _orders(engine: Engine, rng: np.random.Generator) -> None:
    """Points every 20 s in hours 09–11 of today and of a week before, and in hours 10–11
    two weeks before (hour 09 has one past week: too little history); region a spikes at
    11:20 for five minutes, region b at 10:40 for four."""
    today = NOW.replace(hour=9)
    rows: dict[str, list[tuple[datetime, float]]] = {"a": [], "b": []}
    for weeks_back, offset in ((0, 0.0), (1, 0.0), (2, 4.0)):
        for i in range(3 * 180):
            at = today - weeks_back * WEEK + timedelta(seconds=20 * i + 3)
            if weeks_back == 2 and at.hour == 9:
                continue
            for region in ("a", "b"):
                value = float(rng.uniform(60, 80)) + offset
                if weeks_back == 0 and region == "a" and at.hour == 11 and 20 <= at.minute < 25:
                    value += 100
                if weeks_back == 0 and region == "b" and at.hour == 10 and 40 <= at.minute < 44:
                    value += 40
                rows[region].append((at, value))
    with engine.begin() as conn:
        for weeks_back in (1, 2):
            day = NOW - weeks_back * WEEK
            ensure_partitions(conn, start=day, end=day, tables=("metric_points",))
        for region, points in rows.items():
            series = add_series(conn, "orders", {"region": region})
            add_points(conn, series, points, ingested_at=NOW - timedelta(minutes=90))


def _errors(engine: Engine, rng: np.random.Generator) -> None:
    """Card declines in bursts, scattered timeouts, photo errors with one burst, and a
    checkout service whose errors stop for half an hour."""
    events: list[dict[str, Any]] = []

    def add(minutes_ago: float, service: str, error_type: str) -> None:
        at = NOW - timedelta(minutes=minutes_ago) + timedelta(seconds=float(rng.uniform(0, 59)))
        events.append({"t": at, "s": service, "e": error_type})

    for m in range(160, 0, -1):
        if 115 < m <= 120 or 50 < m <= 60:
            for _ in range(1 + (m <= 60)):
                add(m, "payments", "CardDeclined")
        if m % 7 == 0:
            add(m, "payments", "Timeout")
        for _ in range(int(rng.integers(0, 3))):
            add(m, "photos", "UploadFailed")
        if m == 80:
            for _ in range(6):
                add(m, "photos", "UploadFailed")
        if m % 3 == 0 and not 70 < m <= 100:
            add(m, "checkout", "PaymentIntent")
    with engine.begin() as conn:
        ensure_partitions(conn, start=NOW - timedelta(hours=3), end=NOW, tables=("error_events",))
        conn.execute(
            text(
                "INSERT INTO error_events (time, event_id, group_id, error_type, message, "
                "service_name, level, severity) VALUES (:t, gen_random_uuid(), 1, :e, 'x', :s, "
                "'error', 'high')"
            ),
            events,
        )


def _rules(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")

        def add(name: str, cfg: dict[str, Any], **extra: Any) -> int:
            return threshold_rule(conn, START, alert_name=name, cfg=cfg,
                                  notification_channels=[hook], repeat_interval_minutes=20,
                                  **extra)  # fmt: skip

        ids = {name: add(name, cfg) for name, cfg in {**CHILDREN, **RULES}.items()}
        for name, (logic, children) in COMPOSITES.items():
            ids[name] = add(name, {"type": "composite", "logic": logic,
                                   "rules": [ids[c] for c in children]})  # fmt: skip
        r = alert_rules.c
        conn.execute(
            update(alert_rules).where(r.id == ids["child disabled"]).values(is_enabled=False)
        )
        # the backtest assumes each rule had seen data before the range (no data is paged)
        conn.execute(update(alert_rules).values(data_seen_at=START - MIN))
    del ids["child disabled"]
    return ids


def _live(
    engine: Engine, ids: dict[str, int], start: datetime = START, end: datetime = NOW,
    step: timedelta = MIN,
) -> tuple[dict[int, list], dict[int, list]]:  # fmt: skip
    """Committed live cycles every `step` over [start, end]: per rule, its status changes
    (time, key, from, to) and its notifications (time, key, kind), each sorted."""
    for at in steps_of(start, end, step=step):
        with engine.begin() as conn:
            report = evaluate_all(conn, now=at, tz=TZ, public_url="http://localhost:8501")
            assert not report.errors and not report.invalid, report
    with engine.connect() as conn:
        history = list_alert_history(conn, start=start, end=end + MIN, limit=10_000)
        i, o = alert_instances.c, notification_outbox.c
        sent = conn.execute(
            select(i.alert_configuration_id, i.alert_key, o.kind, o.created_at)
            .select_from(notification_outbox)
            .join(alert_instances, i.id == o.alert_instance_id)
        ).all()
    changes: dict[int, list] = {rule_id: [] for rule_id in ids.values()}
    notified: dict[int, list] = {rule_id: [] for rule_id in ids.values()}
    for e in history:
        changes[e["rule_id"]].append(
            (e["time"], e["alert_key"] or "", e["from_status"], e["to_status"])
        )
    for rule_id, key, kind, at in sent:
        notified[rule_id].append((at, key, kind))
    return {k: sorted(v) for k, v in changes.items()}, {k: sorted(v) for k, v in notified.items()}


def _told(replay: dict[str, Any]) -> tuple[list, list]:
    """A backtest's status changes and notifications, as `_live` gives a rule's."""
    events = replay["events"]
    changed = sorted((e["time"], e["alert_key"], e["from_status"], e["to_status"])
                     for e in events if e["from_status"] != e["to_status"])  # fmt: skip
    return changed, sorted((e["time"], e["alert_key"], e["notify"]) for e in events if e["notify"])


def test_the_backtest_of_every_kind_tells_what_the_live_cycles_did(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    partitions_around(engine, NOW)
    rng = np.random.default_rng(8)
    _orders(engine, rng)
    _errors(engine, rng)
    _history(engine)  # latencies, heartbeat, API timings; rolls everything up
    ids = _rules(engine)
    changes, notified = _live(engine, ids)
    fired: dict[str, int] = {}
    evaluated: dict[str, tuple[int, int]] = {}
    with engine.connect() as conn:
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            replay = backtest(conn, rule, start=START, end=NOW, tz=TZ, step=MIN)
            every = backtest(conn, rule, start=START, end=NOW, tz=TZ, skip_quiet=False, step=MIN)
            assert ordered(replay["events"]) == ordered(every["events"]), name
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id], name
            assert sent == notified[rule_id], name
            fired[name] = replay["fired_count"]
            evaluated[name] = (replay["evaluated_steps"], every["evaluated_steps"])
            if name in RULES or name in COMPOSITES:  # the live cadence, skipping or not
                fine = [backtest(conn, rule, start=NOW - timedelta(minutes=40), end=NOW, tz=TZ,
                                 step=timedelta(seconds=15), skip_quiet=skip)
                        for skip in (True, False)]  # fmt: skip
                assert fine[0]["step_seconds"] == 15
                assert ordered(fine[0]["events"]) == ordered(fine[1]["events"]), name
    # an anomaly rule on a percentile replays every minute by default (its partial hours from
    # the minutes' histograms), key by key however busy (`backtest_runs`)
    with engine.connect() as conn:
        p95 = rule_from_row(get_rule(conn, rule_id=ids["orders a p95"]))
        default = backtest(conn, p95, start=START, end=NOW, tz=TZ)
        assert default["step_seconds"] == 60 and default["evaluated_steps"] < 151
        assert not default["coarse"]
    # the history exercised what it is meant to: every rule fired but the one whose PromQL
    # child tells a cycle nothing; quiet and idle steps were skipped
    assert fired.pop("promql and slow a") == 0 and fired.pop("heartbeat below half") == 0
    assert all(count >= 1 for count in fired.values()), fired
    for name in ("payment errors by type", "photo error burst", "checkout errors stop",
                 "orders anomaly by region", "orders b max above", "slow a and slow b",
                 "heartbeat below half"):  # fmt: skip
        assert evaluated[name][0] < evaluated[name][1] / 2, (name, evaluated[name])
    # minutes where a key's check certainly holds while it fires, no repeat due, are not
    # evaluated either (the engine would only count them): fewer evaluated steps than
    # minutes firing, and still the same events as every step evaluated
    for name in ("orders anomaly by region", "payment errors by type"):
        firing = firing_steps(changes[ids[name]], steps_of(START, NOW, step=MIN))  # 15, 17
        assert evaluated[name][0] < firing * 2 / 3, (name, firing, evaluated[name])
    no_data = [c for c in changes[ids["heartbeat below half"]] if c[3] == "no_data"]
    assert len(no_data) >= 2, changes[ids["heartbeat below half"]]
    # an anomaly rule has no data where its hour has too little history (09:xx), and not at
    # an hour's first instant, with no rolled-up minute of the hour yet: the hour just ended
    # is checked then (it used to notify "no data" at every hour's start)
    for name in ("orders anomaly by region", "orders b max above", "orders a p95"):
        no_data = [c[0] for c in changes[ids[name]] if c[3] == "no_data"]
        assert all(at.hour == 9 for at in no_data), (name, no_data)
        assert not [n for n in notified[ids[name]] if n[2] == "no_data" and n[0].hour != 9]
    assert [c[0] for c in changes[ids["orders b max above"]] if c[3] == "no_data"] == [START]


FINE = {  # rules a backtest steps at the live cadence by default
    "raw max": {"metric": "latency_ms", "group_by": ["region"], "aggregation": "max",
                "value": 140, "window_minutes": 1},
    "photo error burst": RULES["photo error burst"],
    "payment errors by type": RULES["payment errors by type"],
    "promql slow regions": RULES["promql slow regions"],
    "api p95": {"metric": "api.latency_ms", "aggregation": "p95", "value": 400,
                "window_minutes": 2, "group_by": ["endpoint"]},
}  # fmt: skip


def test_the_default_step_is_the_live_cadence_and_agrees_with_cycles_every_15_s(
    engine: Engine,
) -> None:
    """Cycles every 15 s over the last 85 minutes: a backtest at its default step (15 s
    for these rules) tells the same story, breaches shorter than a minute included."""
    partitions_around(engine, NOW)
    rng = np.random.default_rng(9)
    _errors(engine, rng)
    _history(engine)
    start = NOW - timedelta(minutes=85)
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")
        ids = {name: threshold_rule(conn, start, alert_name=name, cfg=cfg,
                                    notification_channels=[hook], repeat_interval_minutes=5)
               for name, cfg in FINE.items()}  # fmt: skip
        conn.execute(update(alert_rules).values(data_seen_at=start - MIN))
    changes, notified = _live(engine, ids, start, NOW, timedelta(seconds=15))
    with engine.connect() as conn:
        short = 0
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            replay = backtest(conn, rule, start=start, end=NOW, tz=TZ)
            assert replay["step_seconds"] == 15, name
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id], name
            assert sent == notified[rule_id], name
            by_minute = backtest(conn, rule, start=start, end=NOW, tz=TZ, step=MIN)
            short += replay["fired_count"] - by_minute["fired_count"]
            assert replay["fired_count"] >= 1, name
    assert short >= 1  # firings a minute's step misses


def test_anomaly_and_composite_rules_agree_with_cycles_every_15_s(engine: Engine) -> None:
    """Across an hour's start (10:45–11:10, region b's spike at 10:40 still in the hour's
    value, card declines from 11:00): cycles every 15 s and a backtest at 15 s."""
    partitions_around(engine, NOW)
    rng = np.random.default_rng(10)
    _orders(engine, rng)
    _errors(engine, rng)
    _history(engine)
    start, end = NOW.replace(hour=10, minute=45), NOW.replace(hour=11, minute=10)
    names = ("orders anomaly by region", "orders b max above", "payment errors by type")
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")
        ids = {name: threshold_rule(conn, start, alert_name=name, cfg=RULES[name],
                                    notification_channels=[hook]) for name in names}  # fmt: skip
        ids["payments or anomaly"] = threshold_rule(conn, start, alert_name="payments or anomaly",
            cfg={"type": "composite", "logic": "or", "rules": [ids[n] for n in names[::2]]},
            notification_channels=[hook])  # fmt: skip
        conn.execute(update(alert_rules).values(data_seen_at=start - MIN))
    fine = timedelta(seconds=15)
    changes, notified = _live(engine, ids, start, end, fine)
    with engine.connect() as conn:
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            replay = backtest(conn, rule, start=start, end=end, tz=TZ, step=fine)
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id] and changes[rule_id], name
            assert sent == notified[rule_id], name
