"""The backtest against the live engine for rate of change and absence rules on windowed
signals (API timings): replayed at every step, the quiet ones found from the events.

A hundred minutes of API timings: a search endpoint (three requests every 10 s) that slows
down twice for a quarter of an hour and goes silent for seven minutes, a payments endpoint
(a request every 20 s) that fails for a spell, and a photo upload endpoint with a request
every two minutes that stops half an hour before the end. Rules: rates of change of a p95
in percent (grouped), of an average in ms, of a maximum falling, of the error rate, of the
request count (a count: 0 in an empty window), with `min_count`; absence rules grouped by
endpoint and filtered to one. The live engine runs committed cycles every minute over 80
minutes, and every 15 s over the last 40; the backtest replays the same ranges at those
steps: the same status changes and notifications, the same with nothing skipped, and far
fewer steps evaluated than the range has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, update

from monitoring_core.alerts.backtest import backtest, every_step, live_cadence
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import alert_rules
from tests.alerting_support import channel, threshold_rule
from tests.rollup_fixtures import add_timings
from tests.test_backtest_live import NOW, TZ, ordered
from tests.test_backtest_live_kinds import _live, _told

START = NOW - timedelta(minutes=80)
MIN = timedelta(minutes=1)
SEARCH, CHARGE, UPLOAD = "/api/vendors/search", "/api/payments/charge", "/api/photos/upload"
CHANGE = {"type": "rate_of_change", "metric": "api.latency_ms", "window_minutes": 5}
RULES: dict[str, dict[str, Any]] = {
    "p95 up 40 % by endpoint": {**CHANGE, "aggregation": "p95", "value": 40,
                                "group_by": ["endpoint"], "duration_minutes": 1},
    "search avg up 60 ms": {**CHANGE, "aggregation": "avg", "change_mode": "absolute",
                            "value": 60, "window_minutes": 3, "filters": {"endpoint": SEARCH}},
    "max falls by half": {**CHANGE, "aggregation": "max", "operator": "less_than",
                          "value": -50, "group_by": ["endpoint"], "min_count": 3},
    "error rate up": {**CHANGE, "metric": "api.error_rate", "aggregation": "avg",
                      "change_mode": "absolute", "value": 0.2, "group_by": ["service"]},
    "requests fall": {**CHANGE, "metric": "api.requests", "aggregation": "count",
                      "operator": "less_than_or_equal", "value": -60, "window_minutes": 4,
                      "filters": {"endpoint": SEARCH}, "expire_minutes": 10},
    "silent endpoint": {"type": "absence", "metric": "api.requests", "window_minutes": 4,
                        "group_by": ["endpoint"], "expire_minutes": 20},
    "search silent": {"type": "absence", "metric": "api.requests", "window_minutes": 3,
                      "filters": {"endpoint": SEARCH}},
}  # fmt: skip


def _timings(engine: Engine) -> None:
    rng = np.random.default_rng(31)
    rows: list[tuple[datetime, str, str, int, float]] = []
    for i in range(100 * 6):  # every 10 s for 100 minutes
        base = NOW - timedelta(minutes=100) + timedelta(seconds=10 * i)
        ago = (NOW - base) / MIN
        if not 18 < ago <= 25:  # the search endpoint goes silent for seven minutes
            slow = 2.2 if 55 < ago <= 70 or 30 < ago <= 42 else 1.0
            for _ in range(3):
                at = base + timedelta(seconds=float(rng.uniform(0, 10)))
                rows.append((at, "GET", SEARCH, 200, float(rng.lognormal(5, 0.3)) * slow))
        if i % 2 == 0:
            at = base + timedelta(seconds=float(rng.uniform(0, 10)))
            failing = 35 < ago <= 47 and rng.random() < 0.6
            rows.append((at, "POST", CHARGE, 502 if failing else 200, float(rng.lognormal(6, 0.2))))
        if i % 12 == 5 and ago > 30:
            rows.append((base, "POST", UPLOAD, 200, float(rng.lognormal(7, 0.4))))
    with engine.begin() as conn:
        ensure_partitions(conn, start=NOW - timedelta(hours=2), end=NOW, tables=("api_timings",))
        add_timings(conn, rows, ingested_at=NOW - timedelta(minutes=100))


@pytest.fixture
def signal_rules(engine: Engine) -> dict[str, int]:
    _timings(engine)
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")
        ids = {name: threshold_rule(conn, START, alert_name=name, cfg=cfg,
                                    notification_channels=[hook], repeat_interval_minutes=7)
               for name, cfg in RULES.items()}  # fmt: skip
        conn.execute(update(alert_rules).values(data_seen_at=START - MIN))
    return ids


def test_every_minute_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, signal_rules: dict[str, int]
) -> None:
    ids = signal_rules
    changes, notified = _live(engine, ids, START, NOW)
    evaluated: dict[str, int] = {}
    with engine.connect() as conn:
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            assert every_step(rule) and live_cadence(rule), name
            replay = backtest(conn, rule, start=START, end=NOW, tz=TZ, step=MIN)
            every = backtest(conn, rule, start=START, end=NOW, tz=TZ, step=MIN, skip_quiet=False)
            assert ordered(replay["events"]) == ordered(every["events"]), name
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id], name
            assert sent == notified[rule_id], name
            assert replay["fired_count"] >= 1, name
            evaluated[name] = replay["evaluated_steps"]
    # far fewer steps evaluated than the range has: the quiet ones (clear of the threshold,
    # or not silent) and the firing ones no repeat falls due at; the busiest are the
    # sparse endpoint's (a handful of uploads in each window, often none in one)
    assert sum(evaluated.values()) < 0.4 * 81 * len(ids), evaluated
    for name in ("search avg up 60 ms", "requests fall", "search silent"):
        assert evaluated[name] < 12, evaluated


def test_at_the_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, signal_rules: dict[str, int]
) -> None:
    ids, start = signal_rules, NOW - timedelta(minutes=40)
    changes, notified = _live(engine, ids, start, NOW, timedelta(seconds=15))
    with engine.connect() as conn:
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            replay = backtest(conn, rule, start=start, end=NOW, tz=TZ)
            assert replay["step_seconds"] == 15, name
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id], name
            assert sent == notified[rule_id], name
            every = backtest(conn, rule, start=start, end=NOW, tz=TZ, skip_quiet=False)
            assert ordered(replay["events"]) == ordered(every["events"]), name
