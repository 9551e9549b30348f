"""The demo's health domain: checks with simulated history that agrees with the rules."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.demo import health as demo_health
from monitoring_core.health.runner import run_due_checks
from monitoring_core.health.store import list_checks, list_flips
from monitoring_core.schema import (
    health_check_pings,
    health_check_results,
    metric_series,
    sql_collectors,
)
from tests.least_privilege_support import role_urls

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py


def test_it_loads_checks_history_collectors_and_a_pushed_job(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        counts = demo_health.load(conn, days=3, now=now, rng=np.random.default_rng(1))
    assert counts["health_checks"] == 7 and counts["sql_collectors"] == 3
    assert counts["health_check_results"] == 7 * 3 * 24 * 12
    with engine.connect() as conn:
        checks = {c.check_name: c for c in list_checks(conn)}
        flips = list_flips(conn, since=now - timedelta(days=366))
        pushed = conn.execute(
            select(func.count()).where(metric_series.c.name == "invoice_export_rows")
        ).scalar()
        results = conn.execute(select(func.count()).select_from(health_check_results)).scalar()
        collectors = conn.execute(select(sql_collectors.c.kind)).scalars().all()
    assert results == counts["health_check_results"] and pushed == 1
    assert sorted(collectors) == ["prometheus_scrape", "sql", "sql"]
    assert checks["Nightly backup"].ping_token and checks["Vendor search"].wedding_critical
    with engine.connect() as conn:  # the cron heartbeat's nightly log: start, then success
        pings = conn.execute(
            select(health_check_pings.c.kind, health_check_pings.c.duration_s)
            .add_columns(health_check_pings.c.body_sha256)
            .order_by(health_check_pings.c.time)
        ).all()
    successes = [p for p in pings if p.kind == "success"]
    assert 1 <= len(successes) <= 3 and all(p.duration_s > 0 and p.body_sha256 for p in successes)
    assert all(p.duration_s is None for p in pings if p.kind == "start")
    vendor = [f for f in flips if f["check_name"] == "Vendor search"]
    assert any(f["to_status"] == "critical" for f in vendor)
    assert any(f["is_auto_recovery"] for f in vendor)  # the outage ended on its own
    assert len([f for f in flips if f["check_name"] == "Payments partner"]) > len(vendor)


def test_it_leaves_checks_the_worker_can_run(
    engine: Engine, now: datetime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's database check is `self`: it runs as the reader role, as under `make run`.
    monkeypatch.setenv("DATABASE_READER_URL", role_urls(database_url)[1])
    with engine.begin() as conn:
        demo_health.load(conn, days=1, now=now, rng=np.random.default_rng(2))
    report = run_due_checks(engine, now)
    assert report.checked == 7
    with engine.connect() as conn:
        checks = {c.check_name: c for c in list_checks(conn)}
    assert checks["Platform database"].status.value == "healthy"
    # It measures this machine's real disk: healthy exactly when at least 5 % is free (a CI
    # machine's disk ran past 95 % once; the check ran and said so, the test said it failed)
    usage = shutil.disk_usage("/")
    disk = checks["Disk space"]
    assert (disk.status.value == "healthy") == (100 * usage.free / usage.total >= 5), disk
