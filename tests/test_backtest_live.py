"""The backtest against the live engine on the same history (a differential test).

Ninety minutes of history (three regions reporting every 10 s at uneven offsets: a
breach, a flapping key, a region that stops in breach; a heartbeat that stops) and rules of every kind the cycle
reads from raw points (grouped and filtered thresholds, a percentile with hysteresis and
repeats, rates of change up and down in percent, absence), rules whose window it reads from
the rollups with the newest minutes from raw points (half-hour and 25-minute windows, a rate
of change over 24 minutes), and signal templates read
by `signals_read` (API p95 latency per endpoint, the API error rate, with a slow and a failing
spell in the API timings). The live engine runs cycle by cycle with a frozen clock
at each of the backtest's steps, committing as the worker does; then the backtest replays
the same range. Both must tell the same story: the same status changes of the same keys at
the same moments, and the same notifications (firing, repeat, resolved, no data); and the
backtest skipping the minutes it finds quiet from the rollups (`backtest_quiet`) tells the
same story as evaluating every one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, select

from monitoring_core.alerts import backtest as backtest_mod
from monitoring_core.alerts import backtest_change
from monitoring_core.alerts.backtest import backtest, steps_of
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule, list_alert_history
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.partitions import ensure_partitions
from monitoring_core.rollups import run_rollups
from monitoring_core.schema import alert_instances, notification_outbox
from tests.alerting_support import channel, partitions_around, threshold_rule
from tests.rollup_fixtures import add_points, add_series, add_timings

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)  # a Tuesday out of season
START = NOW - timedelta(minutes=45)
MIN = timedelta(minutes=1)

RULES = {
    "grouped avg": {"metric": "latency_ms", "group_by": ["region"], "window_minutes": 5,
                    "duration_minutes": 2, "expire_minutes": 10},
    "filtered p95": {"metric": "latency_ms", "filters": {"region": "b"}, "aggregation": "p95",
                     "value": 120, "window_minutes": 3, "recovery_value": 90},
    "max repeats": {"metric": "latency_ms", "group_by": ["region"], "aggregation": "max",
                    "value": 140, "window_minutes": 2},
    "rate of change": {"type": "rate_of_change", "metric": "latency_ms", "value": 30,
                       "window_minutes": 5, "filters": {"region": "a"}},
    "rate of change jump": {"type": "rate_of_change", "metric": "latency_ms", "value": 45,
                            "change_mode": "absolute", "window_minutes": 5,
                            "filters": {"region": "a"}},
    "rate of change percent drop": {"type": "rate_of_change", "metric": "latency_ms",
                                    "group_by": ["region"], "change_mode": "percent",
                                    "operator": "less_than", "value": -30, "window_minutes": 3},
    "heartbeat absent": {"type": "absence", "metric": "heartbeat", "window_minutes": 4},
    # windows longer than series.RAW_MAX: rollups, the newest minutes from raw points
    "rollup avg": {"metric": "latency_ms", "group_by": ["region"], "window_minutes": 30,
                   "value": 82, "expire_minutes": 10},
    "rollup max": {"metric": "latency_ms", "filters": {"region": "b"}, "aggregation": "max",
                   "value": 150, "window_minutes": 25},
    "rollup rate of change": {"type": "rate_of_change", "metric": "latency_ms",
                              "filters": {"region": "a"}, "aggregation": "max", "value": 45,
                              "window_minutes": 24},
    # signal templates (signals_read)
    "api p95": {"metric": "api.latency_ms", "aggregation": "p95", "value": 400,
                "window_minutes": 5, "group_by": ["endpoint"], "duration_minutes": 1},
    "api errors": {"metric": "api.error_rate", "value": 0.2, "window_minutes": 3},
}  # fmt: skip


def _history(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    rows: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    timings: list[tuple[datetime, str, str, int, float]] = []
    for i in range(90 * 6):  # 90 minutes before NOW, every 10 s
        base = NOW - timedelta(minutes=90) + timedelta(seconds=10 * i)
        minutes_ago = (NOW - base) / MIN
        for offset, region in ((3, "a"), (7, "b"), (1, "c")):
            at = base + timedelta(seconds=offset + float(rng.uniform(0, 2)))
            value = float(rng.uniform(50, 90))
            if region == "a" and 22 < minutes_ago <= 34:
                value += 70  # a breach of a dozen minutes
            if region == "b" and 8 < minutes_ago <= 30 and int(minutes_ago) % 4 < 2:
                value += float(rng.uniform(40, 90))  # flapping: two minutes on, two off
            if region == "c" and minutes_ago <= 28:
                continue  # region c stops reporting (in breach: its alert expires)
            if region == "c" and minutes_ago <= 40:
                value += 60
            rows.setdefault(("latency_ms", region), []).append((at, value))
        if minutes_ago > 15 and i % 3 == 0:  # a heartbeat every 30 s that stops
            rows.setdefault(("heartbeat", ""), []).append((base, 1.0))
        for endpoint in ("/api/photos/upload", "/api/payments/charge"):  # two requests per 10 s
            for k in range(2):
                at = base + timedelta(seconds=float(rng.uniform(0, 10)))
                ms, status = float(rng.lognormal(5, 0.3)), 200
                if endpoint == "/api/photos/upload" and 12 < minutes_ago <= 20:
                    ms *= 4  # a slow spell of eight minutes
                if endpoint == "/api/payments/charge" and 30 < minutes_ago <= 36 and k == 0:
                    status = 502  # half the charges fail for six minutes
                timings.append((at, "POST", endpoint, status, ms))
    with engine.begin() as conn:
        ensure_partitions(conn, start=NOW - timedelta(hours=2), end=NOW, tables=("api_timings",))
        for (metric, region), points in rows.items():
            series = add_series(conn, metric, {"region": region} if region else {})
            add_points(conn, series, points, ingested_at=NOW - timedelta(minutes=90))
        add_timings(conn, timings, ingested_at=NOW - timedelta(minutes=90))
    run_rollups(engine, NOW, safety_lag=timedelta(0))  # the long windows read the rollups


def firing_steps(changes: list[tuple], steps: list[datetime]) -> int:
    """At how many of `steps` some key was firing, after status `changes` (time, key, from,
    to)."""
    status: dict[str, str] = {}
    firing, pending = 0, sorted(changes)
    for at in steps:
        while pending and pending[0][0] <= at:
            _time, key, _before, after = pending.pop(0)
            status[key] = str(after)
        firing += "firing" in status.values()
    return firing


def ordered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (e["time"], e["alert_key"]))


def test_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    partitions_around(engine, NOW)
    _history(engine)
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")
        ids = {
            name: threshold_rule(conn, START, alert_name=name, cfg=cfg,
                                 notification_channels=[hook], repeat_interval_minutes=6)
            for name, cfg in RULES.items()
        }  # fmt: skip
    steps = steps_of(START, NOW)
    assert steps[0] == START and steps[-1] == NOW and len(steps) == 46
    for at in steps:  # the live engine, one committed cycle per step, clock frozen at it
        with engine.begin() as conn:
            report = evaluate_all(conn, now=at, tz=TZ, public_url="http://localhost:8501")
            assert not report.errors and not report.invalid

    with engine.connect() as conn:
        history = list_alert_history(conn, start=START, end=NOW + MIN, limit=10_000)
        i, o = alert_instances.c, notification_outbox.c
        sent = conn.execute(
            select(i.alert_configuration_id, i.alert_key, o.kind, o.created_at)
            .select_from(notification_outbox)
            .join(alert_instances, i.id == o.alert_instance_id)
            .order_by(o.created_at, i.alert_key)
        ).all()
        replays = {
            name: backtest(
                conn,
                rule_from_row(get_rule(conn, rule_id=rid)),
                start=START,
                end=NOW,
                tz=TZ,
                step=MIN,
            )  # fmt: skip
            for name, rid in ids.items()
        }
        every_step = {
            name: backtest(
                conn,
                rule_from_row(get_rule(conn, rule_id=rid)),
                start=START,
                end=NOW,
                tz=TZ,
                skip_quiet=False,
                step=MIN,
            )  # fmt: skip
            for name, rid in ids.items()
        }
    total_changes = 0
    skipped = 0
    firing: dict[str, int] = {}
    for name, rule_id in ids.items():
        # the steps found quiet from the rollups and skipped change nothing
        assert ordered(replays[name]["events"]) == ordered(every_step[name]["events"]), name
        skipped += every_step[name]["evaluated_steps"] - replays[name]["evaluated_steps"]
        live = sorted(
            (e["time"], e["alert_key"] or "", e["from_status"], e["to_status"])
            for e in history
            if e["rule_id"] == rule_id
        )
        replayed = sorted(
            (e["time"], e["alert_key"], e["from_status"], e["to_status"])
            for e in replays[name]["events"]
            if e["from_status"] != e["to_status"]
        )
        assert replayed == live, name
        live_sent = sorted((at, key, kind) for rid, key, kind, at in sent if rid == rule_id)
        replay_sent = sorted(
            (e["time"], e["alert_key"], e["notify"]) for e in replays[name]["events"] if e["notify"]
        )
        assert replay_sent == live_sent, name
        total_changes += len(live)
        firing[name] = firing_steps(live, steps)
    # the history exercised what it is meant to: every rule fired, some more than once
    fired = {name: replays[name]["fired_count"] for name in ids}
    assert all(count >= 1 for count in fired.values()), fired
    assert fired["max repeats"] >= 3 and total_changes >= 20, (fired, total_changes)
    repeats = [e for e in replays["max repeats"]["events"] if e["notify"] == "repeat"]
    expired = [e for e in replays["grouped avg"]["events"] if e["to_status"] == "expired"]
    assert repeats and expired
    assert skipped >= 50, skipped  # a busy history: still, many minutes were quiet
    # minutes certainly past the threshold while the instance fires (no repeat due) are not
    # evaluated either: the engine would only count them
    # (a grouped rule with a flapping key evaluates its steps for that key's sake)
    counts = (replays["rollup max"]["evaluated_steps"], firing["rollup max"])  # 6 of 29
    assert counts[0] < counts[1] / 2, counts
    for name in ("rate of change jump", "rollup rate of change"):
        # rate of change rules skip quiet minutes too (they stepped at most 2,000 times):
        # those whose change certainly stays clear of the threshold, between the extremes of
        # the minutes compared (not the noisier ones, whose extremes are 40 ms apart)
        counts = (replays[name]["evaluated_steps"], every_step[name]["evaluated_steps"])
        assert counts[0] < counts[1] * 0.9, (name, counts)
    with engine.connect() as conn:  # at the live cycle's 15 s as well
        for name in ("grouped avg", "rollup max", "api p95", "rate of change jump"):
            rule = rule_from_row(get_rule(conn, rule_id=ids[name]))
            runs = [
                backtest(
                    conn,
                    rule,
                    start=START,
                    end=NOW,
                    tz=TZ,
                    step=timedelta(seconds=15),
                    skip_quiet=skip,
                )  # fmt: skip
                for skip in (True, False)
            ]
            assert runs[0]["step_seconds"] == 15 and runs[1]["evaluated_steps"] == 181
            assert not runs[0]["coarse"]
            assert ordered(runs[0]["events"]) == ordered(runs[1]["events"]), name
        # however busy, a rule whose range's raw points are read at once is replayed key by
        # key at the live cadence (`backtest_runs`, `backtest_window`)
        monkeypatch.setattr(backtest_mod, "BUSY_LIMIT", 1)
        rule = rule_from_row(get_rule(conn, rule_id=ids["grouped avg"]))
        by_key = backtest(conn, rule, start=START, end=NOW, tz=TZ)
        every = backtest(conn, rule, start=START, end=NOW, tz=TZ, skip_quiet=False)
        assert by_key["step_seconds"] == every["step_seconds"] == 15 and not by_key["coarse"]
        assert ordered(by_key["events"]) == ordered(every["events"])
        # … unless that would ask the engine more often than KEYWISE_EXACT (its check is
        # computed at every step, `backtest_window.threshold_source`): as busy rules do
        monkeypatch.setattr(backtest_mod, "KEYWISE_EXACT", 1)
        limited = backtest(conn, rule, start=START, end=NOW, tz=TZ)
        assert limited["step_seconds"] == 60 and limited["coarse"]
        assert ordered(limited["events"]) == ordered(replays["grouped avg"]["events"])
        monkeypatch.setattr(backtest_mod, "KEYWISE_EXACT", 250_000)
        # one whose raw points are too many to read at once (here: more than 10), busy at
        # more steps than BUSY_LIMIT, steps as other rules do (here: a minute)
        monkeypatch.setattr(backtest_change, "RAW_LIMIT", 10)
        busy = backtest(conn, rule, start=START, end=NOW, tz=TZ)  # 15 s by default
        assert busy["step_seconds"] == 60 and busy["evaluated_steps"] == 46
        assert busy["coarse"]  # said so: a breach shorter than a minute can be missing
        assert ordered(busy["events"]) == ordered(replays["grouped avg"]["events"])
        # too busy at 15 s but not by the minute: every minute, quiet ones skipped
        monkeypatch.setattr(backtest_mod, "BUSY_LIMIT", 46)
        by_minute = backtest(conn, rule, start=START, end=NOW, tz=TZ)
        assert by_minute["step_seconds"] == 60
        assert by_minute["evaluated_steps"] < 46
        assert ordered(by_minute["events"]) == ordered(replays["grouped avg"]["events"])
