"""Anomaly rules on windowed signals in a backtest: every step, the events read once.

- `percentiles` gives, over random windows of random values (ties, one value, two), exactly
  what `np.percentile` gives (==), for the percentiles the signals offer;
- API timings today and the same hours one and two weeks before (the second week missing
  an hour: too little history there), with a slow spell of the search endpoint, a burst of
  its requests, and failing payments today; rules on a p95 by endpoint, a request count,
  the error rate, a maximum with `min_count` and an average. The live engine runs committed
  cycles every minute for 90 minutes and every 15 s for the last 30; the backtest replays
  the same ranges: the same status changes and notifications, the same with nothing
  skipped, with far fewer steps evaluated than the range has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from monitoring_core.partitions import ensure_partitions
from monitoring_core.wavelet import Wavelet, percentiles
from tests.backtest_support import replayed_as_live, saved_rules
from tests.rollup_fixtures import add_timings
from tests.test_backtest_live import NOW

START = NOW - timedelta(minutes=90)
MIN, WEEK = timedelta(minutes=1), timedelta(days=7)
SEARCH, CHARGE, UPLOAD = "/api/vendors/search", "/api/payments/charge", "/api/photos/upload"
ANOMALY = {"type": "anomaly", "weeks": 2, "min_baseline": 2}
RULES: dict[str, dict[str, Any]] = {
    "p95 by endpoint": {**ANOMALY, "metric": "api.latency_ms", "aggregation": "p95",
                        "group_by": ["endpoint"], "z_threshold": 4, "duration_minutes": 2},
    "search requests above": {**ANOMALY, "metric": "api.requests", "aggregation": "count",
                              "filters": {"endpoint": SEARCH}, "direction": "above"},
    "payments error rate": {**ANOMALY, "metric": "api.error_rate", "aggregation": "avg",
                            "filters": {"service": "payments"}, "direction": "above"},
    "max of five or more": {**ANOMALY, "metric": "api.latency_ms", "aggregation": "max",
                            "group_by": ["endpoint"], "min_count": 5, "z_threshold": 6},
    "search average": {**ANOMALY, "metric": "api.latency_ms", "aggregation": "avg",
                       "filters": {"endpoint": SEARCH}, "no_data_state": "keep_last"},
}  # fmt: skip


def test_percentiles_are_numpys_to_the_bit() -> None:
    rng = np.random.default_rng(41)
    v = np.round(rng.lognormal(5, 1, size=3_000), int(rng.integers(0, 3)))  # ties too
    v[::7] = v[3]
    distinct, codes = np.unique(v, return_inverse=True)
    tree = Wavelet(codes.astype(np.int64))
    lo = rng.integers(0, len(v), size=4_000)
    hi = np.minimum(lo + rng.integers(0, 60, size=4_000), len(v))
    hi[:50] = lo[:50] + 1  # one value
    hi[50:100] = np.minimum(lo[50:100] + 2, len(v))
    for q in (50, 75, 90, 95, 99):
        got = percentiles(q / 100, distinct, tree, lo, hi)
        want = [np.percentile(v[a:b], q) if b > a else np.nan for a, b in zip(lo, hi, strict=True)]
        assert np.array_equal(got, np.array(want), equal_nan=True), q


def _timings(engine: Engine) -> None:
    rng = np.random.default_rng(43)
    rows: list[tuple[datetime, str, str, int, float]] = []
    first = NOW - timedelta(minutes=155)
    for weeks_back in range(3):
        for i in range(155 * 6):  # every 10 s
            today = first + timedelta(seconds=10 * i)
            if weeks_back == 2 and today.hour == 10 and today.minute < 50:
                continue  # that hour two weeks ago is missing
            base = today - weeks_back * WEEK
            slow = 2.5 if weeks_back == 0 and today.hour == 11 and today.minute < 20 else 1.0
            burst = 3 if weeks_back == 0 and today.hour == 11 and 30 <= today.minute < 45 else 1
            for _ in range(2 * burst):
                at = base + timedelta(seconds=float(rng.uniform(0, 10)))
                ms = float(rng.lognormal(5, 0.3)) * slow
                rows.append((at, "GET", SEARCH, 200, ms))
            if i % 2 == 0:
                at = base + timedelta(seconds=float(rng.uniform(0, 10)))
                failing = (
                    weeks_back == 0
                    and (10 * 60 + 50) <= today.hour * 60 + today.minute < 11 * 60 + 5
                )
                status = 502 if failing and rng.random() < 0.4 else 200
                rows.append((at, "POST", CHARGE, status, float(rng.lognormal(6, 0.2))))
            if i % 18 == 0:
                rows.append((base, "POST", UPLOAD, 200, float(rng.lognormal(7, 0.4))))
    with engine.begin() as conn:
        for weeks_back in range(3):
            day = NOW - weeks_back * WEEK
            ensure_partitions(
                conn, start=day - timedelta(hours=3), end=day, tables=("api_timings",)
            )
        add_timings(conn, rows, ingested_at=NOW - timedelta(minutes=160))


@pytest.fixture
def anomaly_rules(engine: Engine) -> dict[str, int]:
    _timings(engine)
    return saved_rules(engine, START, RULES, repeat_minutes=15)


def test_every_minute_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, anomaly_rules: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, anomaly_rules, START, NOW, MIN)
    assert all(r["fired_count"] >= 1 for r in replays.values()), replays.keys()
    evaluated = {name: r["evaluated_steps"] for name, r in replays.items()}
    # far fewer steps evaluated than the 91 minutes of each: those inside the band while
    # not firing, or past it while firing with no repeat due (a flat baseline too, the
    # error rate's 0s: any other value is infinitely far); the p95 and the maximum by
    # endpoint are busier (the sparse upload endpoint's hour of a handful of requests)
    assert sum(evaluated.values()) < 0.3 * 91 * len(evaluated), evaluated
    for name in ("search requests above", "payments error rate", "search average"):
        assert evaluated[name] < 15, evaluated


def test_at_the_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, anomaly_rules: dict[str, int]
) -> None:
    replayed_as_live(engine, anomaly_rules, NOW - timedelta(minutes=30), NOW)
