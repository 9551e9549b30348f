"""What the faster cycle keeps between cycles and how it writes (real Postgres).

- Enabled rules are re-read only when a row's content changes (`store.enabled_rule_rows`):
  an edit is seen by the very next cycle, in another transaction or in the same one.
- Decisions travel to Postgres as JSON: infinite and NaN values, non-ASCII keys and
  dimensions survive the trip exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, text

from monitoring_core.alerts.engine import AlertState, Check, Decision
from monitoring_core.alerts.store import enabled_rule_rows, update_rule
from monitoring_core.alerts.writes import DecisionWrite, only_counted, save_decisions
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.schema import alert_events, alert_instances
from tests.alerting_support import partitions_around, point, threshold_rule

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def test_an_edited_rule_is_evaluated_as_edited_by_the_next_cycle(engine: Engine) -> None:
    partitions_around(engine, NOW)
    point(engine, NOW, 150)
    with engine.begin() as conn:
        rule_id = threshold_rule(conn, NOW, cfg={"value": 100})
        first = {r.row["id"]: r for r in enabled_rule_rows(conn)}
        again = {r.row["id"]: r for r in enabled_rule_rows(conn)}
        assert again[rule_id].row is first[rule_id].row  # held, not read again
        assert evaluate_all(conn, now=NOW, tz=TZ, public_url="http://ui.test").keys == 1
        # edited in the same transaction: the threshold now above the value, seen at once
        update_rule(conn, rule_id=rule_id, body={"condition_config": {
            "type": "threshold", "metric": "checkout_latency_ms", "aggregation": "avg",
            "operator": "greater_than", "value": 200, "window_minutes": 1}}, now=NOW)  # fmt: skip
        edited = {r.row["id"]: r for r in enabled_rule_rows(conn)}[rule_id]
        assert edited.version != first[rule_id].version
        assert edited.row["condition_config"]["value"] == 200
        evaluate_all(conn, now=NOW, tz=TZ, public_url="http://ui.test")
        status = conn.execute(select(alert_instances.c.status)).scalar_one()
        assert status == "resolved"  # fired at 150 > 100, then resolved under 200
    with engine.begin() as conn:  # disabled in another transaction: no longer listed
        conn.execute(
            text("UPDATE alert_rules SET is_enabled = false WHERE id = :i"), {"i": rule_id}
        )
    with engine.connect() as conn:
        assert rule_id not in {r.row["id"] for r in enabled_rule_rows(conn)}


def test_values_postgres_reads_from_json_strings_survive_the_write(engine: Engine) -> None:
    with engine.begin() as conn:
        rule_id = threshold_rule(conn, NOW)
    writes = []
    for i, value in enumerate((math.inf, -math.inf, math.nan, 1.5)):
        state = AlertState(status="firing", trigger_count=1, trigger_value=value,
                           first_triggered_at=NOW, last_triggered_at=NOW)  # fmt: skip
        check = Check(True, value, 0.0, f"change {value:g} — ünïcode")
        key = f"région=é{i}"
        writes.append(
            DecisionWrite(rule_id, key, {"région": f"é{i}"}, Decision(state, check, "high"))
        )
    with engine.begin() as conn:
        ids = save_decisions(conn, writes, now=NOW)
        assert None not in ids
    with engine.connect() as conn:
        rows = {r.alert_key: r for r in conn.execute(select(alert_instances))}
        events = {r.instance_id: r for r in conn.execute(select(alert_events))}
    stored = [rows[f"région=é{i}"] for i in range(4)]
    assert [r.trigger_value for r in stored[:2]] == [math.inf, -math.inf]
    assert math.isnan(stored[2].trigger_value) and stored[3].trigger_value == 1.5
    assert stored[0].trigger_dimensions == {"région": "é0"}
    assert stored[0].first_triggered_at == NOW and stored[0].severity == "high"
    assert events[ids[1]].value == -math.inf and events[ids[0]].message.endswith("ünïcode")


def test_a_key_still_firing_is_written_in_three_columns(engine: Engine) -> None:
    """A counted write (same status and severity, only the count, last trigger and value
    moved) updates those and `last_evaluated_at`; the rest of the row stays as it was."""
    with engine.begin() as conn:
        rule_id = threshold_rule(conn, NOW)
    first = AlertState(status="acknowledged", trigger_count=1, trigger_value=120.0,
                       first_triggered_at=NOW, last_triggered_at=NOW, acknowledged_at=NOW)  # fmt: skip
    check = Check(True, 120.0, 100.0, "avg 120 vs 100")
    with engine.begin() as conn:
        (instance_id,) = save_decisions(
            conn, [DecisionWrite(rule_id, "", {}, Decision(first, check, "high"))], now=NOW
        )
        conn.execute(
            text("UPDATE alert_instances SET escalation_step = 2 WHERE id = :i"), {"i": instance_id}
        )
    later = NOW.replace(minute=1)
    after = replace(first, trigger_count=2, trigger_value=131.5, last_triggered_at=later)
    assert only_counted(first, after) and not only_counted(first, replace(after, status="firing"))
    decision = Decision(after, Check(True, 131.5, 100.0, "avg 131.5 vs 100"), "high",
                        from_status="acknowledged")  # fmt: skip
    write = DecisionWrite(rule_id, "", {}, decision, instance_id, counted=True)
    with engine.begin() as conn:
        assert save_decisions(conn, [write], now=later) == [instance_id]
    with engine.connect() as conn:
        row = conn.execute(select(alert_instances)).one()
        history = conn.execute(select(alert_events)).all()
    assert (row.trigger_count, row.trigger_value, row.last_triggered_at) == (2, 131.5, later)
    assert row.last_evaluated_at == later and row.status == "acknowledged"
    assert (row.acknowledged_at, row.first_triggered_at, row.escalation_step) == (NOW, NOW, 2)
    assert len(history) == 1  # the first write's status change only
