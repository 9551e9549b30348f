"""The demo errors: recurring groups, a regression, a recovery, ignored noise, a cross-service
burst, and nothing secret at rest."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text

from monitoring_core.demo import errors as demo_errors
from monitoring_core.demo import loader_rng
from monitoring_core.errors.correlation import related_groups
from monitoring_core.schema import error_groups

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py


def test_it_loads_a_realistic_error_history(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        counts = demo_errors.load(conn, days=6, now=now, rng=loader_rng(demo_errors))
    assert counts["error_events"] > 500
    with engine.connect() as conn:
        groups = {g.error_type: g for g in conn.execute(select(error_groups))}
        dump = conn.execute(
            text("SELECT string_agg(message || coalesce(stack_trace, ''), ' ') FROM error_events")
        ).scalar_one()
        burst = groups["PoolTimeout"]
        related = related_groups(conn, group_id=burst.id, start=now - timedelta(days=2), end=now)
    assert groups["CardError"].status == "regressed"
    assert groups["CardError"].resolved_in_release == "payments@2.3.1"
    assert groups["ResizeObserver"].status == "ignored"
    assert groups["SMTPRecipientsRefused"].recovered_at == now
    assert groups["TypeError"].event_count > 100 and groups["TypeError"].user_count > 50
    assert groups["ValidationError"].message_template.startswith("RSVP form submission rejected")
    assert {r["error_type"] for r in related} == {"HTTPError", "BookingSyncError"}
    for secret in ("4242 4242 4242 4242", "@example.com", "sk_live_"):
        assert secret not in dump
