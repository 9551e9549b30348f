"""The alerting demo loader: what it writes, and that a cycle runs over it."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.demo import alerts as demo_alerts
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.schema import alert_events, alert_rules

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py


def test_it_loads_rules_channels_policies_and_history(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        counts = demo_alerts.load(conn, days=5, now=now, rng=np.random.default_rng(1))
        rules = conn.execute(select(func.count()).select_from(alert_rules)).scalar_one()
        events = conn.execute(select(func.count()).select_from(alert_events)).scalar_one()
    assert counts["alert_rules"] == rules == 7 and counts["alert_events"] == events > 0
    report = run_evaluation(engine, now + timedelta(seconds=1))
    assert report.rules == 7 and report.invalid == [] and report.errors == []
