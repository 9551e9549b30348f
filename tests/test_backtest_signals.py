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
from sqlalchemy import Engine

from monitoring_core.partitions import ensure_partitions
from tests.backtest_support import replayed_as_live, saved_rules
from tests.rollup_fixtures import add_timings
from tests.test_backtest_live import NOW

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
    return saved_rules(engine, START, RULES, repeat_minutes=7)


def test_every_minute_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, signal_rules: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, signal_rules, START, NOW, MIN)
    assert all(r["fired_count"] >= 1 for r in replays.values()), replays.keys()
    evaluated = {name: r["evaluated_steps"] for name, r in replays.items()}
    # far fewer steps evaluated than the range has: the quiet ones (clear of the threshold,
    # or not silent) and the firing ones no repeat falls due at; the busiest are the
    # sparse endpoint's (a handful of uploads in each window, often none in one)
    assert sum(evaluated.values()) < 0.4 * 81 * len(evaluated), evaluated
    for name in ("search avg up 60 ms", "requests fall", "search silent"):
        assert evaluated[name] < 12, evaluated


def test_at_the_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, signal_rules: dict[str, int]
) -> None:
    replayed_as_live(engine, signal_rules, NOW - timedelta(minutes=40), NOW)
