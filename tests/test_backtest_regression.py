"""The p95 regression signal in a backtest: the Performance page's flag at every step.

Two and a half hours of 1-minute API rollups today and the same hours one and two weeks
before, for four endpoints: one that slows down for half an hour (its ratio climbs past 1.5
as the slow minutes fill its hour, then falls back), one with one request a minute, one so
sparse that its hour hovers around the 20 requests a flag needs (listed, then not), and a
second endpoint of the payments service. Rows are written both ways the rollups store a
minute's histogram (repeated keys without counts, and keys with counts).

- `regression_values` gives, at every minute and at moments between minutes, exactly the
  ratios the live cycle's `SignalReader._flags` reads from `regression_flags` (compared
  with ==, the set of listed endpoints included);
- the live engine runs committed cycles every minute (and every 15 s for the last 40
  minutes) for rules on the signal grouped by endpoint, by service, filtered to one method,
  the template itself, and rates of change of the ratio up and down; the backtest replays
  the same range and tells the same status changes and notifications, skipping or not, at
  a step the engine evaluated far fewer times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, select, text

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest import steps_of
from monitoring_core.alerts.detail import condition_series
from monitoring_core.alerts.rules import TEMPLATES, rule_from_row
from monitoring_core.alerts.signals_read import SignalReader
from monitoring_core.histogram import bucket_key, from_values
from monitoring_core.performance.regression_steps import regression_values
from monitoring_core.schema import alert_instances
from tests.backtest_support import replayed_as_live, saved_rules
from tests.test_backtest_live import NOW, TZ

START = NOW - timedelta(minutes=150)
MIN, WEEK = timedelta(minutes=1), timedelta(days=7)
WEEKS = 2
ENDPOINTS = {  # (method, endpoint) -> requests per minute
    ("GET", "/api/vendors/search"): 4.0,
    ("POST", "/api/payments/charge"): 1.0,
    ("GET", "/api/payments/status"): 1.5,
    ("POST", "/api/photos/upload"): 0.35,
}
SIGNAL = {"metric": "api.p95_regression", "aggregation": "max", "weeks": WEEKS,
          "operator": "greater_than_or_equal", "value": 1.5, "window_minutes": 5}  # fmt: skip
RULES: dict[str, dict[str, Any]] = {
    "by endpoint": {**SIGNAL, "group_by": ["endpoint"], "duration_minutes": 3},
    "by service": {**SIGNAL, "group_by": ["service"], "value": 1.3, "expire_minutes": 15},
    "GET only": {**SIGNAL, "filters": {"method": "GET"}, "value": 1.2},
    "template": {**TEMPLATES["performance_regression"]["condition_config"], "weeks": WEEKS},
    # rates of change of the ratio: a cycle reads it at now − window and at now
    "up 20 % in 10 min by endpoint": {
        **SIGNAL,
        "type": "rate_of_change",
        "value": 20,
        "operator": "greater_than",
        "window_minutes": 10,
        "group_by": ["endpoint"],
    },
    "down 0.2 in 5 min by service": {
        **SIGNAL,
        "type": "rate_of_change",
        "value": -0.2,
        "operator": "less_than",
        "change_mode": "absolute",
        "group_by": ["service"],
        "expire_minutes": 15,
    },
}


def _rollups(engine: Engine, rng: np.random.Generator) -> None:
    """Rows for [START − 1 h, NOW) today and in each past week (the past weeks a little
    faster, the search endpoint slow today from 10:30 to 11:00)."""
    rows = []
    for weeks_back in range(WEEKS + 1):
        first = START - timedelta(hours=1) - weeks_back * WEEK
        for minute in range(210):
            bucket = first + minute * MIN
            for (method, endpoint), rate in ENDPOINTS.items():
                n = int(rng.poisson(rate))
                if n == 0:
                    continue
                ms = rng.lognormal(5.0 - 0.05 * weeks_back, 0.35, size=n)
                today = bucket + weeks_back * WEEK
                if weeks_back == 0 and endpoint == "/api/vendors/search" and 10 <= today.hour < 11:
                    ms *= 1.9 if today.minute >= 30 else 1.0
                if minute % 2:  # keys with counts
                    keys, counts = from_values(ms.tolist())
                else:  # a key per request, repeated, no counts
                    keys, counts = sorted(bucket_key(float(x)) for x in ms), []
                rows.append({"b": bucket, "m": method, "e": endpoint, "n": n,
                             "s": float(ms.sum()), "lo": float(ms.min()), "hi": float(ms.max()),
                             "k": keys, "c": counts})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_rollup_1m (bucket, method, endpoint, error_count, "
                "client_error_count, count, sum, min, max, hist_keys, hist_counts) VALUES "
                "(:b, :m, :e, 0, 0, :n, :s, :lo, :hi, :k, CAST(:c AS bigint[]))"
            ),
            rows,
        )


def _flags(conn: Any, at: datetime) -> dict[tuple[str, str], float]:
    """What a live cycle at `at` reads: the listed endpoints' ratios."""
    found = SignalReader(conn, at)._flags(at, WEEKS)
    return {(labels["method"], labels["endpoint"]): ratio for labels, ratio in found}


def test_every_ratio_is_the_one_the_cycle_reads(engine: Engine) -> None:
    _rollups(engine, np.random.default_rng(21))
    moments = steps_of(START, NOW, step=MIN) + [
        START + timedelta(minutes=m, seconds=s) for m in range(0, 150, 7) for s in (15, 30, 45)
    ]
    stamps = np.array([at.timestamp() for at in moments])
    ends = np.ceil(stamps / 60.0) * 60.0
    with engine.connect() as conn:
        found = regression_values(conn, ends, WEEKS)
        listed_any = 0
        for i, at in enumerate(moments):
            live = _flags(conn, at)
            replay = {name: float(r[i]) for name, r in found.items() if r[i] == r[i]}
            assert replay == live, at
            listed_any += len(live)
    # the history exercised what it is meant to: every endpoint listed at some moment, the
    # sparse one not always, and the slow one past 1.5
    search = found[("GET", "/api/vendors/search")]
    assert np.nanmax(search) >= 1.5 and np.nanmin(search) < 1.2
    sparse = found[("POST", "/api/photos/upload")]
    assert np.isnan(sparse).any() and (~np.isnan(sparse)).any()
    assert listed_any > 2 * len(moments)


@pytest.fixture
def regression_rules(engine: Engine) -> dict[str, int]:
    _rollups(engine, np.random.default_rng(22))
    return saved_rules(engine, START, RULES, repeat_minutes=20)


def test_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, regression_rules: dict[str, int]
) -> None:
    ids = regression_rules
    replays, _changes = replayed_as_live(engine, ids, START, NOW, MIN)
    for name, replay in replays.items():
        assert replay["evaluated_steps"] < replay["every_step_evaluated"] / 4, name
        assert replay["fired_count"] >= 1 or name == "template", name
    with engine.connect() as conn:  # the alert page's graph: the ratio the cycle read
        i = alert_instances.c
        instance = conn.execute(
            select(i.id).where(i.alert_configuration_id == ids["by endpoint"],
                               i.alert_key == "endpoint=/api/vendors/search")
        ).scalar_one()  # fmt: skip
        drawn = condition_series(conn, instance_id=instance, start=START, end=NOW, tz=TZ)
        assert len(drawn["points"]) > 100
        for at, value in drawn["points"]:
            assert value == _flags(conn, at)[("GET", "/api/vendors/search")], at


def test_at_its_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, regression_rules: dict[str, int]
) -> None:
    """Cycles every 15 s over the last 40 minutes (the slow spell's hour leaving the window
    between minutes): the backtest at its default step, 15 s."""
    _replays, changes = replayed_as_live(engine, regression_rules, NOW - timedelta(minutes=40), NOW)
    assert sum(map(len, changes.values())) >= 3, changes


def test_a_reader_with_many_stamps_gives_each_the_ratios_of_one_cycle(engine: Engine) -> None:
    """A backtest's or a graph's reader (a step: every stamp at once) against one cycle's
    read at each stamp, grouped by service (the largest ratio of its endpoints)."""
    _rollups(engine, np.random.default_rng(23))
    rule = rule_from_row({"id": 0, "alert_name": "r", "severity_level": "high",
                          "condition_config": {**SIGNAL, "group_by": ["service"]}})  # fmt: skip
    fk = series_mod.fetch_key(rule)
    assert fk is not None
    key = series_mod.signal_key(fk)
    start = START + timedelta(seconds=45)  # stamps between minutes too
    with engine.connect() as conn:
        many = SignalReader(conn, NOW, step=timedelta(seconds=75), start=start)._regression(key)
        stamps = many and sorted({p.time for points in many.values() for p in points})
        assert len(stamps) > 100
        for at in stamps:
            one = SignalReader(conn, at)._ratios(at, key)
            got = {g: p.value for g, points in many.items() for p in points if p.time == at}
            assert got == one, at
