"""Sparse metrics in a backtest: health-check results every two and a half minutes and
heartbeats that pause, replayed at every step (`backtest_change.raw_presence`).

A check every 150 s leaves many 5-minute windows without a whole minute of data, so the
minutes' bounds cannot tell whether a window holds a point: such rules used to be busy at
most steps and fell back to capped steps. Whether each key is in a step's read, and whether
its newest point is inside the window, now come from the raw points; a threshold on
values sitting on its limit (a check's 1 against `min < 1`) is decided without room for
rounding; absence rules are decided outright (silent for the window or not). The live engine
runs committed cycles every minute over 80 minutes, then every 15 s over the last 30; the
backtest tells the same, skipping or not, with far fewer steps evaluated than the range has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from monitoring_core.partitions import ensure_partitions
from monitoring_core.rollups import run_rollups
from tests.backtest_support import replayed_as_live, saved_rules
from tests.rollup_fixtures import add_points, add_series
from tests.test_backtest_live import NOW

START = NOW - timedelta(minutes=80)
MIN = timedelta(minutes=1)
RULES: dict[str, dict[str, Any]] = {
    "check down": {"type": "threshold", "metric": "check_up", "aggregation": "avg",
                   "operator": "less_than", "value": 0.5, "window_minutes": 5,
                   "group_by": ["check"], "duration_minutes": 2},
    "check missed once": {"type": "threshold", "metric": "check_up", "aggregation": "min",
                          "operator": "less_than", "value": 1, "window_minutes": 10,
                          "group_by": ["check"]},
    "job silent": {"type": "absence", "metric": "job_beat", "window_minutes": 6,
                   "group_by": ["job"], "expire_minutes": 30},
    "any beat": {"type": "absence", "metric": "job_beat", "window_minutes": 4},
}  # fmt: skip


def _history(engine: Engine) -> None:
    first = NOW - timedelta(minutes=100)
    checks: dict[str, list[tuple[datetime, float]]] = {"api": [], "search": [], "payments": []}
    for i, name in enumerate(checks):
        for k in range(40):  # every 150 s, at each check's own offset
            at = first + timedelta(seconds=150 * k + 37 * i + 5)
            ago = (NOW - at) / MIN
            down = (name == "search" and 50 < ago <= 62) or (name == "payments" and 20 < ago <= 24)
            checks[name].append((at, 0.0 if down else 1.0))
    beats: dict[str, list[tuple[datetime, float]]] = {"backup": [], "mailer": []}
    for k in range(100 * 2):  # every 30 s; the mailer pauses twice, the backup once, both a while
        at = first + timedelta(seconds=30 * k + 11)
        ago = (NOW - at) / MIN
        if not 40 < ago <= 52:
            beats["backup"].append((at, 1.0))
        if not (60 < ago <= 68 or 38 < ago <= 50):
            beats["mailer"].append((at, 1.0))
    with engine.begin() as conn:
        ensure_partitions(conn, start=first, end=NOW, tables=("metric_points",))
        for name, points in checks.items():
            add_points(conn, add_series(conn, "check_up", {"check": name}), points,
                       ingested_at=first)  # fmt: skip
        for job, points in beats.items():
            add_points(conn, add_series(conn, "job_beat", {"job": job}), points,
                       ingested_at=first)  # fmt: skip
    run_rollups(engine, NOW, safety_lag=timedelta(0))


@pytest.fixture
def sparse_rules(engine: Engine) -> dict[str, int]:
    _history(engine)
    return saved_rules(engine, START, RULES, repeat_minutes=15)


def test_every_minute_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, sparse_rules: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, sparse_rules, START, NOW, MIN)
    fired = {name: r["fired_count"] for name, r in replays.items()}
    assert all(n >= 1 for n in fired.values()), fired
    evaluated = {name: r["evaluated_steps"] for name, r in replays.items()}
    assert sum(evaluated.values()) < 0.3 * 81 * len(evaluated), evaluated


def test_at_the_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, sparse_rules: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, sparse_rules, NOW - timedelta(minutes=30), NOW)
    evaluated = {name: r["evaluated_steps"] for name, r in replays.items()}
    assert sum(evaluated.values()) < 0.3 * 121 * len(evaluated), evaluated
