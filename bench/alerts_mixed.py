"""Alerting speed on mixed signals: one evaluation cycle over 1,000 rules, a third of them on
API timings, Web Vitals and error groups (#12's target: < 1 s), against a same-run baseline
of 1,000 metric-only rules.

Builds database `bench_alerts_mixed` on the embedded Postgres under .data/bench: the metric
data set of `bench/alerts.py` (40 metrics x 25 series, a point every 10 s for 2 hours, 4 weeks
of history for the anomaly metrics, 2,000 error events), plus 2 hours of API timings (50
requests/s over 16 endpoints in 8 services, ~5 % slow, ~1 % 5xx), Web Vitals (5 reports/s
over 12 pages and 3 devices) and 40 error groups with new/regressed history; rolled up.

Baseline: the 1,000 metric-only rules of `bench/alerts.py` (700 threshold, 100 rate of change,
100 absence, 50 anomaly, 50 pattern). Mixed: 667 of those (every third one dropped) and 333
signal rules — 150 on API timings (p95/p99 latency per endpoint or status class, error rate
per service, request counts), 100 on Web Vitals (p75 per page or device, share of poor), 80
on error groups (events per service or level, new groups, regressions) and 3 on the p95
regression. Each: a first cycle (creates instances), then the median of 3 cycles 2 minutes
later with a new point in every series before each. Prints figures; last line: JSON.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.alerts import build, cycle_ms, database, rules, tick  # noqa: E402
from monitoring_core.alerts import series as series_mod  # noqa: E402
from monitoring_core.alerts.rules import rule_from_row  # noqa: E402
from monitoring_core.alerts.store import create_rule, list_rules  # noqa: E402
from monitoring_core.config import load_settings  # noqa: E402
from monitoring_core.rollups import run_rollups  # noqa: E402

DB_NAME = "bench_alerts_mixed"
SERVICES = ("payments", "photos", "forms", "bookings", "suppliers", "couples", "messages", "auth")
ENDPOINTS = [(m, f"/api/{s}/{p}") for s in SERVICES for m, p in (("GET", "list"), ("POST", "x"))]
PAGES = [f"/page/{i}" for i in range(12)]
DEVICES = ("mobile", "desktop", "tablet")
VITALS = ("LCP", "INP", "CLS", "FCP", "TTFB")


def _copy(engine: Engine, table: str, columns: str, rows: Any) -> None:
    with engine.begin() as conn:
        pg = conn.connection.driver_connection
        assert pg is not None
        with pg.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)


def build_signals(engine: Engine, now: datetime) -> dict[str, int]:
    """API timings, Web Vitals and error groups for the last 2 hours (COPY), rolled up."""
    rng = np.random.default_rng(3)
    seconds = 2 * 3600
    n_api, n_vitals = 50 * seconds, 5 * seconds
    t_api = np.sort(rng.uniform(-seconds, 0, n_api))
    ep = rng.integers(len(ENDPOINTS), size=n_api)
    latency = rng.lognormal(np.log(120), 0.6, n_api) * np.where(rng.random(n_api) < 0.05, 8, 1)
    status = np.where(rng.random(n_api) < 0.01, 503, np.where(rng.random(n_api) < 0.03, 404, 200))
    _copy(engine, "api_timings", "time, method, endpoint, status_code, response_time_ms, ingested_at",
          ((now + timedelta(seconds=float(t)), ENDPOINTS[e][0], ENDPOINTS[e][1], int(s), float(v), now)
           for t, e, s, v in zip(t_api, ep, status, latency, strict=True)))  # fmt: skip
    t_v = np.sort(rng.uniform(-seconds, 0, n_vitals))
    names = rng.integers(len(VITALS), size=n_vitals)
    values = rng.lognormal(np.log(1800), 0.5, n_vitals)
    _copy(engine, "web_vitals", "time, name, value, rating, page_route, device_type, ingested_at",
          ((now + timedelta(seconds=float(t)), VITALS[k], float(v), "poor" if v > 4000 else "good",
            PAGES[int(rng.integers(len(PAGES)))], DEVICES[int(rng.integers(3))], now)
           for t, k, v in zip(t_v, names, values, strict=True)))  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO error_groups (fingerprint, error_type, message_template, level, severity, "
            "services, first_seen, last_seen) SELECT 'fp' || g, 'E' || (g % 5), 'boom', "
            "(ARRAY['api','frontend','database'])[1 + g % 3], 'high', ARRAY['s' || (g % 10)], "
            ":now - g * interval '3 minutes', :now FROM generate_series(1, 40) g"), {"now": now})  # fmt: skip
        conn.execute(text(
            "INSERT INTO error_group_changes (group_id, time, kind) SELECT id, first_seen, "
            "CASE WHEN id % 4 = 0 THEN 'regressed' ELSE 'new' END FROM error_groups"))  # fmt: skip
    run_rollups(engine, now + timedelta(seconds=1), safety_lag=timedelta(0))
    return {"api_timings": n_api, "web_vitals": n_vitals}


def _signal_rule(i: int) -> dict[str, Any]:
    window = (5, 10, 15)[i % 3]
    base = {"type": "threshold", "operator": "greater_than", "window_minutes": window,
            "duration_minutes": 2}  # fmt: skip
    if i < 150:
        kind = i % 5
        if kind == 0:
            return {**base, "metric": "api.latency_ms", "aggregation": "p95", "value": 900,
                    "group_by": ["endpoint"]}  # fmt: skip
        if kind == 1:
            return {**base, "metric": "api.error_rate", "aggregation": "avg", "value": 0.02,
                    "group_by": ["service"], "min_count": 10}  # fmt: skip
        if kind == 2:
            return {**base, "metric": "api.requests", "aggregation": "count", "value": 10,
                    "operator": "less_than", "filters": {"service": SERVICES[i % 8]}}  # fmt: skip
        if kind == 3:
            return {**base, "metric": "api.latency_ms", "aggregation": "p99", "value": 2000,
                    "filters": {"endpoint": ENDPOINTS[i % len(ENDPOINTS)][1]}}  # fmt: skip
        return {**base, "metric": "api.latency_ms", "aggregation": "p95", "value": 1500,
                "group_by": ["status_class"]}  # fmt: skip
    if i < 250:
        vital = VITALS[i % 5]
        if i % 2:
            return {**base, "metric": f"web_vitals.{vital}", "aggregation": "p75", "value": 2500,
                    "group_by": ["page_route" if i % 4 == 1 else "device_type"]}  # fmt: skip
        return {**base, "metric": f"web_vitals.{vital}.poor_share", "aggregation": "avg",
                "value": 0.25, "group_by": ["device_type"]}  # fmt: skip
    if i < 330:
        kind = i % 4
        if kind == 0:
            return {**base, "metric": "errors.events", "aggregation": "count", "value": 20,
                    "group_by": ["service"]}  # fmt: skip
        if kind == 1:
            return {**base, "metric": "errors.events", "aggregation": "count", "value": 50,
                    "filters": {"level": "api"}}  # fmt: skip
        if kind == 2:
            return {**base, "metric": "errors.new_groups", "aggregation": "count", "value": 0,
                    "group_by": ["service"], "window_minutes": 60}  # fmt: skip
        return {**base, "metric": "errors.regressions", "aggregation": "count", "value": 0,
                "window_minutes": 60}  # fmt: skip
    return {**base, "metric": "api.p95_regression", "aggregation": "max", "value": 1.5,
            "group_by": ["endpoint"]}  # fmt: skip


def mixed_rules(engine: Engine, now: datetime) -> dict[str, int]:
    """Drop every third metric rule, add 333 signal rules."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alert_events"))
        conn.execute(text("DELETE FROM alert_instances"))
        conn.execute(text("DELETE FROM alert_rules WHERE id % 3 = 0"))
        kept = conn.execute(text("SELECT count(*) FROM alert_rules")).scalar_one()
        for i in range(1000 - kept):
            create_rule(conn, body={"alert_name": f"signal {i}", "severity_level": "medium",
                                    "condition_config": _signal_rule(i)},
                        created_by="bench", now=now)  # fmt: skip
    return {"metric_rules": int(kept), "signal_rules": 1000 - int(kept)}


def timed_cycles(engine: Engine, now: datetime, tz: Any, label: str) -> dict[str, Any]:
    first, report = cycle_ms(engine, now, tz)
    print(f"{label}: first cycle (creates instances) {first:.0f} ms — {report.summary()}")
    runs, rng = [], np.random.default_rng(5)
    for i in range(1, 4):
        at = now + timedelta(minutes=2, seconds=15 * i)
        tick(engine, at - timedelta(seconds=5), rng)
        ms, report = cycle_ms(engine, at, tz)
        runs.append(ms)
        print(f"  cycle {i}: {ms:.0f} ms — {report.summary()}")
    median = statistics.median(runs)
    print(f"{label}: median {median:.0f} ms of {[round(r) for r in runs]}")
    return {"first_ms": first, "median_ms": median, "runs_ms": runs, "keys": report.keys,
            "errors": report.errors}  # fmt: skip


def signal_reads_ms(engine: Engine, at: datetime) -> tuple[float, int]:
    """The windowed-signal part of a cycle alone: announce every signal key, read each family
    once, compute every key (what `_fetch_all` does for them), median of 3."""
    with engine.connect() as conn:
        parsed = [rule_from_row(r) for r in list_rules(conn, enabled_only=True)]
        spans: dict[series_mod.FetchKey, timedelta] = {}
        for rule in parsed:
            key = series_mod.fetch_key(rule)
            if key is not None and key.kind == "signal":
                spans[key] = max(
                    spans.get(key, series_mod.lookback(rule)), series_mod.lookback(rule)
                )
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            reader = series_mod.SeriesReader(conn, at)
            reader.want_signals(spans)
            for key, span in spans.items():
                reader.fetch(key, span)
            runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), len(spans)


def main() -> None:
    started = time.perf_counter()
    _url, engine = database(DB_NAME)
    now = datetime.now(UTC).replace(microsecond=0)
    built = build(engine, now)
    signals_built = build_signals(engine, now)
    print(f"built {built['points']:,.0f} metric points, {signals_built['api_timings']:,} API "
          f"timings, {signals_built['web_vitals']:,} Web Vitals, 40 error groups")  # fmt: skip
    tz = load_settings({"MONITORING_TZ": "Europe/London"}).tz
    rules(engine, now)
    baseline = timed_cycles(engine, now, tz, "baseline, 1,000 metric-only rules")
    counts = mixed_rules(engine, now + timedelta(minutes=3))
    later = now + timedelta(minutes=1)  # the same data, fresh instances
    mixed = timed_cycles(engine, later, tz, f"mixed, {counts['metric_rules']} metric + "
                         f"{counts['signal_rules']} signal rules")  # fmt: skip
    reads_ms, keys = signal_reads_ms(engine, later + timedelta(minutes=2, seconds=45))
    print(
        f"of which the 333 signal rules' reads and windows: {reads_ms:.0f} ms ({keys} shared keys)"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mixed cycle {mixed['median_ms']:.0f} ms vs metric-only {baseline['median_ms']:.0f} ms "
          f"(target < 1000 ms); peak RSS {rss:.0f} MB; {time.perf_counter() - started:.0f} s in all")  # fmt: skip
    engine.dispose()
    print(json.dumps({"benchmark": "alerts_mixed", "mixed_cycle_ms": round(mixed["median_ms"], 1),
                      "metric_only_cycle_ms": round(baseline["median_ms"], 1),
                      "mixed_first_cycle_ms": round(mixed["first_ms"], 1),
                      "mixed_keys": mixed["keys"], **counts, "errors": mixed["errors"],
                      "signal_reads_ms": round(reads_ms, 1), "signal_keys": keys,
                      "peak_rss_mb": round(rss), "target_ms": 1000}))  # fmt: skip


if __name__ == "__main__":
    main()
