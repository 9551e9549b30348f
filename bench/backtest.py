"""Backtest speed and completeness over 90 days, per rule family ("Test against history").

Builds database `bench_backtest` on the embedded Postgres under .data/bench (reused when its
data is there; `--fresh` rebuilds): 90 days of `latency_ms` for three regions (a point every
30 s) with a breach of region a every ~31 hours, lasting 2 to 40 minutes (a third of them
shorter than 5 minutes), a `heartbeat` every 30 s that stops for 12 minutes every ~3 days,
rolled up, then the raw points older than 14 days deleted (the default retention: the
1-minute rollups are kept 90 days); and 14 days of API timings (three endpoints, one
request per 20 s each) with a slow spell (p95 over 2 s) and a failing spell every two days.

Times `backtest` at 90 days (wall and this process's CPU; Postgres's own CPU is not in it)
for: a grouped 5-minute threshold (raw window), a 30-minute threshold (rollups and raw
tail), an absence rule, and the Slow Response Time and High Error Rate templates (API
signals). Baseline in the same run: the same rules evaluated at every minute with nothing skipped,
over 7 days (the cost per evaluated minute; 90 days is 13 times as many; and whether both
give the same events), and how many firings the backtest found before, at the 65-minute steps
it took over 90 days.
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bench_db import database_url  # noqa: E402
from monitoring_core.alerts import backtest as backtest_mod  # noqa: E402
from monitoring_core.alerts.rules import TEMPLATES, Rule, rule_from_row  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402
from monitoring_core.rollups import run_rollups  # noqa: E402

NAME = "bench_backtest"
TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS = 90
RAW_DAYS = 14


def _rule(cfg: dict[str, Any]) -> Rule:
    body = {"id": 0, "alert_name": "bench", "severity_level": "high", "condition_config": cfg}
    return rule_from_row(body)


RULES: dict[str, Rule] = {
    "raw 5 min avg by region": _rule({"type": "threshold", "metric": "latency_ms",
        "aggregation": "avg", "operator": "greater_than", "value": 120, "window_minutes": 5,
        "group_by": ["region"]}),
    "rollup 30 min avg by region": _rule({"type": "threshold", "metric": "latency_ms",
        "aggregation": "avg", "operator": "greater_than", "value": 100, "window_minutes": 30,
        "group_by": ["region"]}),
    "absence 5 min": _rule({"type": "absence", "metric": "heartbeat", "window_minutes": 5}),
    # breaching nearly all the time: more steps than BUSY_LIMIT to evaluate, capped steps
    "always breaching (capped steps)": _rule({"type": "threshold", "metric": "latency_ms",
        "aggregation": "max", "operator": "greater_than", "value": 60, "window_minutes": 5,
        "group_by": ["region"], "repeat_interval_minutes": 60}),
    "template slow_response_time": rule_from_row({"id": 0, **TEMPLATES["slow_response_time"]}),
    "template high_error_rate": rule_from_row({"id": 0, **TEMPLATES["high_error_rate"]}),
}  # fmt: skip


def _build(engine: Engine, url: str) -> None:
    rng = np.random.default_rng(18)
    start = NOW - timedelta(days=DAYS)
    migrate(engine, now=NOW, days_back=DAYS + 2)
    ticks = np.arange(0, DAYS * 86_400, 30.0)
    with engine.begin() as conn:
        ids = {}
        for name, dims in (("latency_ms", "a"), ("latency_ms", "b"), ("latency_ms", "c"),
                           ("heartbeat", "")):  # fmt: skip
            dimensions = json.dumps({"region": dims} if dims else {})
            ids[(name, dims)] = conn.execute(
                text("INSERT INTO metric_series (name, dimensions) "
                     "VALUES (:n, CAST(:d AS jsonb)) RETURNING id"),
                {"n": name, "d": dimensions},
            ).scalar_one()  # fmt: skip
    breaches = np.zeros(len(ticks), dtype=bool)
    for k, begin in enumerate(np.arange(3_600.0, DAYS * 86_400 - 7_200, 31 * 3_600.0)):
        length = [2, 3, 4, 8, 15, 40][k % 6] * 60
        breaches |= (ticks >= begin) & (ticks < begin + length)
    silent = np.zeros(len(ticks), dtype=bool)
    for begin in np.arange(7_200.0, DAYS * 86_400 - 7_200, 3 * 86_400 + 3_917.0):
        silent |= (ticks >= begin) & (ticks < begin + 12 * 60)
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as pg, pg.cursor() as cur:
        with cur.copy("COPY metric_points (time, series_id, value, ingested_at) FROM STDIN") as cp:
            for (name, region), sid in ids.items():
                jitter = rng.uniform(0, 20, len(ticks))
                if name == "heartbeat":
                    values, keep = np.ones(len(ticks)), ~silent
                else:
                    values = rng.uniform(50, 90, len(ticks))
                    if region == "a":
                        values = values + 90 * breaches
                    keep = np.ones(len(ticks), dtype=bool)
                for t, v in zip(
                    (ticks + jitter)[keep].tolist(), values[keep].tolist(), strict=True
                ):
                    at = start + timedelta(seconds=t)
                    cp.write_row((at, sid, v, at))
        api_start = NOW - timedelta(days=RAW_DAYS)
        with cur.copy(
            "COPY api_timings (time, method, endpoint, status_code, response_time_ms, "
            "ingested_at) FROM STDIN"
        ) as cp:
            seconds = np.arange(0, RAW_DAYS * 86_400, 20.0)
            for e, endpoint in enumerate(("/api/photos/upload", "/api/payments/charge",
                                          "/api/guests/list")):  # fmt: skip
                ms = rng.lognormal(5, 0.4, len(seconds))
                status = np.full(len(seconds), 200)
                day = seconds % (2 * 86_400)
                if e == 0:
                    ms = np.where((day >= 36_000) & (day < 36_000 + 1_800), ms * 20, ms)
                if e == 1:
                    status = np.where((day >= 60_000) & (day < 60_000 + 900), 502, status)
                for s, m, c in zip(seconds.tolist(), ms.tolist(), status.tolist(), strict=True):
                    at = api_start + timedelta(seconds=s + 3)
                    cp.write_row((at, "POST", endpoint, c, m, at))
        pg.commit()
    run_rollups(engine, NOW, safety_lag=timedelta(0))
    with engine.begin() as conn:  # the default retention of raw points
        conn.execute(text("DELETE FROM metric_points WHERE time < :t"),
                     {"t": NOW - timedelta(days=RAW_DAYS)})  # fmt: skip
        conn.execute(text("ANALYZE"))


def _timed(engine: Engine, rule: Rule, days: int, **kwargs: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        wall, cpu = time.perf_counter(), time.process_time()
        out = backtest_mod.backtest(
            conn, rule, start=NOW - timedelta(days=days), end=NOW, tz=TZ, **kwargs
        )
        return {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
            "steps": int(days * 86_400 / out["step_seconds"]),
            "evaluated_steps": out["evaluated_steps"],
            "fired": out["fired_count"],
            "events": sorted((e["time"], e["alert_key"], str(e["to_status"]), str(e["notify"]))
                             for e in out["events"]),
        }  # fmt: skip


def _coarse_fired(engine: Engine, rule: Rule, days: int) -> int:
    """Firings at the step the backtest used before (65 minutes at 90 days), every step."""
    start = NOW - timedelta(days=days)
    steps = backtest_mod.steps_of(start, NOW)  # no rule: the capped step
    with engine.connect() as conn:
        events, _series, _n = backtest_mod._replay(conn, rule, steps, TZ, skip=False)
    return sum(e["notify"] == "firing" for e in events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="rebuild the data")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per rule (median)")
    args = parser.parse_args()
    url = database_url(NAME, fresh=args.fresh)
    engine = make_engine(url)
    with engine.connect() as conn:
        built = (
            conn.execute(text("SELECT to_regclass('metric_series') IS NOT NULL")).scalar_one()
            and conn.execute(text("SELECT count(*) FROM metric_series")).scalar_one()
        )
    if not built:
        began = time.perf_counter()
        _build(engine, url)
        print(f"built 90 days of history in {time.perf_counter() - began:.0f} s")
    out: dict[str, Any] = {"days": DAYS, "families": {}}
    for name, rule in RULES.items():
        runs = [_timed(engine, rule, DAYS) for _ in range(args.runs)]
        best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        row = {**best, "walls_s": [r["wall_s"] for r in runs]}
        del row["events"]
        if backtest_mod.skips(rule) and row["evaluated_steps"] < row["steps"] / 2:
            every = _timed(engine, rule, 7, skip_quiet=False)
            row["same_events_as_every_minute_7d"] = (
                _timed(engine, rule, 7)["events"] == every["events"]
            )
            row["baseline_every_minute_7d_s"] = every["wall_s"]
            row["baseline_every_minute_90d_est_s"] = round(every["wall_s"] * DAYS / 7, 1)
            row["fired_at_65_min_steps"] = _coarse_fired(engine, rule, DAYS)
        out["families"][name] = row
        print(f"{name:32} 90 d: {row['wall_s']:.2f} s wall (runs {row['walls_s']}), "
              f"{row['cpu_s']:.2f} s CPU; {row['steps']} steps, {row['evaluated_steps']} "
              f"evaluated; fired {row['fired']}"
              + (f"; baseline every minute over 7 d {row['baseline_every_minute_7d_s']:.2f} s "
                 f"(90 d ~{row['baseline_every_minute_90d_est_s']} s); at 65-min steps fired "
                 f"{row['fired_at_65_min_steps']}; same events as every minute over 7 d: "
                 f"{row['same_events_as_every_minute_7d']}"
                 if "fired_at_65_min_steps" in row else ""))  # fmt: skip
    # the live cycle's cadence: every 15 s (a firing shorter than a minute is found too)
    rule, fine = RULES["raw 5 min avg by region"], timedelta(seconds=15)
    runs = [_timed(engine, rule, DAYS, step=fine) for _ in range(args.runs)]
    row = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    day = _timed(engine, rule, 1, step=fine)["events"]
    row["same_events_as_every_15s_1d"] = (
        day == _timed(engine, rule, 1, step=fine, skip_quiet=False)["events"]
    )
    del row["events"]
    out["families"]["raw 5 min avg by region, 15 s steps"] = row
    print(f"{'raw 5 min avg by region, 15 s':32} 90 d: {row['wall_s']:.2f} s wall, "
          f"{row['cpu_s']:.2f} s CPU; {row['steps']} steps, {row['evaluated_steps']} evaluated; "
          f"fired {row['fired']}; same events as every 15 s over 1 d: "
          f"{row['same_events_as_every_15s_1d']}")  # fmt: skip
    out["max_wall_s"] = max(r["wall_s"] for r in out["families"].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
