"""The rule editor's "Test against history" (AppTest): the step can be picked, and the
result says which step the replay used."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from tests.clock_support import off_wedding_day

pytestmark = pytest.mark.clock

AppFactory = Callable[[Role | None], AppTest]
_STEPS = {"15 s (live cadence)": 15, "1 min": 60, "5 min": 300}  # the editor's choices


@pytest.fixture
def test_instant(test_instant: datetime) -> datetime:
    return off_wedding_day(test_instant)


def _tested(at: AppTest, prefix: str, step: str | None) -> tuple[str, str]:
    """Test against history (at `step`, a label of the editor's choices): the metric and the
    caption that tell the result."""
    if step is not None:
        at.selectbox(key=f"{prefix}_step").set_value(_STEPS[step])
    next(b for b in at.button if b.label == "Test against history").click().run()
    assert not at.exception, at.exception
    fired = next(m.value for m in at.metric if m.label == "Would have fired")
    said = next(c.value for c in at.caption if c.value.startswith("Replayed every"))
    return fired, said


def test_it_tests_a_rule_at_the_step_picked_and_says_which(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    from monitoring_core.partitions import ensure_partitions
    from monitoring_core.rollups import run_rollups
    from tests.alerting_support import threshold_rule
    from tests.rollup_fixtures import add_points, add_series

    now = clock.now()
    first = now - timedelta(hours=25)  # the editor tests the last 24 hours
    with engine.begin() as conn:
        ensure_partitions(conn, start=first, end=now, tables=("metric_points",))
        rule_id = threshold_rule(conn, first, alert_name="Checkout slow")
        ages = range(25 * 3600, 0, -20)  # a point every 20 s; a breach of 40 s, 20 min ago
        points = [(now - timedelta(seconds=s), 500 if 1200 >= s > 1160 else 50) for s in ages]
        add_points(conn, add_series(conn, "checkout_latency_ms"), points, ingested_at=first)
    run_rollups(engine, now, safety_lag=timedelta(0))  # the replay finds quiet minutes there
    app = logged_in_app(Role.ADMIN).run()
    app.switch_page("pages/alerts.py").run()
    app.button_group(key="url_tab").set_value("Rules").run()
    app.button(key=f"edit{rule_id}").click().run()
    prefix = f"edit{rule_id}"
    assert app.selectbox(key=f"{prefix}_step").options == [
        "Rule's default", "15 s (live cadence)", "1 min", "5 min",
    ]  # fmt: skip
    fired, said = _tested(app, prefix, None)
    assert said.startswith("Replayed every 15 s"), said  # raw points: the live cadence
    assert fired == "1 time"
    assert not [w for w in app.warning if "can be missing" in w.value]
    fired, said = _tested(app, prefix, "5 min")
    assert said.startswith("Replayed every 5 min"), said
    # coarser than the live cycle: said so, with what it may cost (a 40-s breach)
    warned = [w.value for w in app.warning if "can be missing" in w.value]
    assert warned and warned[0].startswith("Replayed every 5 min, more coarsely"), warned


def test_a_rule_on_a_metric_not_stored_yet_keeps_its_metric_in_the_editor(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    """The worker's own rule names `job_runs`, which is no stored metric: the editor shows
    that name (it used to show the first signal of the list, which Save would have kept)."""
    from monitoring_core.flows.job_watch import ensure_job_rule

    with engine.begin() as conn:
        rule_id = ensure_job_rule(conn)
    app = logged_in_app(Role.ADMIN).run()
    app.switch_page("pages/alerts.py").run()
    app.button_group(key="url_tab").set_value("Rules").run()
    app.button(key=f"edit{rule_id}").click().run()
    assert not app.exception, app.exception
    picked = app.selectbox(key=f"edit{rule_id}_signal")
    assert picked.value == "job_runs"
    assert any("no point of it has been received" in c.value for c in app.caption)
