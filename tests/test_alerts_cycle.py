"""The evaluation cycle on a real Postgres: instances, dedup, outbox, silences, incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text

from monitoring_core.alerts.silences import create_silence
from monitoring_core.alerts.store import list_active_alerts, list_alert_history
from monitoring_core.flows.alert_cycle import EvalReport, run_evaluation
from monitoring_core.incidents.store import list_timeline
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import alert_instances, incidents, notification_outbox
from tests.alerting_support import channel, partitions_around, point, threshold_rule

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)  # a Tuesday
SATURDAY = datetime(2026, 3, 14, 12, 0, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)
URL = "http://ui.test"


@pytest.fixture
def db(engine: Engine) -> Engine:
    partitions_around(engine, NOW)
    partitions_around(engine, SATURDAY)
    return engine


def cycle(engine: Engine, at: datetime) -> EvalReport:
    return run_evaluation(engine, at, tz=TZ, public_url=URL)


def outbox(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(notification_outbox).order_by(notification_outbox.c.id))
        return [dict(r._mapping) for r in rows]


def instances(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_instances).order_by(alert_instances.c.alert_key))
        return [dict(r._mapping) for r in rows]


def test_it_fires_once_and_counts_five_breaches_on_one_instance(db: Engine) -> None:
    with db.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        threshold_rule(conn, NOW, notification_channels=[ch])
    for i in range(5):
        point(db, NOW + i * MIN - timedelta(seconds=10), 150 + i)
        cycle(db, NOW + i * MIN)
    (inst,) = instances(db)
    assert (inst["status"], inst["trigger_count"], inst["trigger_value"]) == ("firing", 5, 154)
    assert inst["first_triggered_at"] == NOW and inst["last_triggered_at"] == NOW + 4 * MIN
    (sent,) = outbox(db)
    assert sent["kind"] == "firing" and sent["channel_id"] == ch
    assert (
        "Checkout slow" in sent["title"]
        and f"{URL}/response-alert?instance={inst['id']}" in sent["body"]
    )
    assert "Value: 150" in sent["body"] and "Threshold: 100" in sent["body"]


def test_it_resolves_and_sends_a_resolved_notification(db: Engine) -> None:
    with db.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        rule_id = threshold_rule(conn, NOW, notification_channels=[ch])
    point(db, NOW - timedelta(seconds=10), 500)
    cycle(db, NOW)
    point(db, NOW + MIN - timedelta(seconds=10), 5)
    report = cycle(db, NOW + MIN)
    assert [r["kind"] for r in outbox(db)] == ["firing", "resolved"]
    assert instances(db)[0]["resolved_at"] == NOW + MIN
    assert report.changes == 1
    with db.connect() as conn:
        history = list_alert_history(conn, start=NOW - MIN, end=NOW + 5 * MIN, rule_id=rule_id)
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("firing", "resolved"),
        (None, "firing"),
    ]


def test_it_keeps_one_instance_per_group(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, NOW, cfg={"group_by": ["endpoint"]})
    for endpoint, value in (("/pay", 300), ("/rsvp", 20), ("/photos", 900)):
        point(db, NOW - timedelta(seconds=5), value, dims={"endpoint": endpoint, "host": "a"})
    cycle(db, NOW)
    assert [(i["alert_key"], i["status"]) for i in instances(db)] == [
        ("endpoint=/pay", "firing"),
        ("endpoint=/photos", "firing"),
    ]
    assert instances(db)[0]["trigger_dimensions"] == {"endpoint": "/pay"}


def test_it_records_no_data_as_its_own_state(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, NOW)
    cycle(db, NOW)
    assert [i["status"] for i in instances(db)] == ["no_data"]


def test_it_reads_older_minutes_from_the_rollups(db: Engine) -> None:
    from monitoring_core.rollups import run_rollups

    with db.begin() as conn:
        threshold_rule(conn, NOW, cfg={"window_minutes": 10, "aggregation": "max"})
    point(db, NOW - 8 * MIN, 700)  # too old for the raw tail: only a rollup can show it
    run_rollups(db, NOW, safety_lag=timedelta(0))
    cycle(db, NOW)
    assert [(i["status"], i["trigger_value"]) for i in instances(db)] == [("firing", 700)]


def test_it_silences_notifications_but_records_state_and_notifies_when_it_ends(db: Engine) -> None:
    with db.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        threshold_rule(conn, NOW, notification_channels=[ch], service_name="payments")
        create_silence(
            conn,
            matchers=[{"name": "service", "value": "pay.*", "is_regex": True}],
            starts_at=NOW - MIN,
            ends_at=NOW + 90 * timedelta(seconds=1),
            reason="deploy",
            created_by="alice",
        )
    point(db, NOW - timedelta(seconds=5), 500)
    report = cycle(db, NOW)
    assert report.silenced == 1 and outbox(db) == []
    assert instances(db)[0]["status"] == "firing"
    point(db, NOW + 2 * MIN - timedelta(seconds=5), 500)
    cycle(db, NOW + 2 * MIN)  # the silence ended at NOW + 90 s
    assert [r["kind"] for r in outbox(db)] == ["firing"]


@pytest.mark.parametrize(("at", "expected"), [(NOW, "SEV2"), (SATURDAY, "SEV1")])
def test_it_opens_an_incident_for_a_critical_alert(db: Engine, at: datetime, expected: str) -> None:
    with db.begin() as conn:
        threshold_rule(conn, at, severity_level="critical")
    point(db, at - timedelta(seconds=5), 500)
    report = cycle(db, at)
    point(db, at + MIN - timedelta(seconds=5), 600)
    cycle(db, at + MIN)  # still firing: no second incident
    with db.connect() as conn:
        (incident,) = conn.execute(select(incidents)).all()
        timeline = list_timeline(conn, incident_id=incident.id)
    assert report.incidents == 1
    assert incident.severity == expected and incident.is_saturday is (at == SATURDAY)
    assert incident.incident_number == "INC-2026-0001"
    assert instances(db)[0]["incident_id"] == incident.id
    assert [e["kind"] for e in timeline] == ["opened"]
    point(db, at + 2 * MIN - timedelta(seconds=5), 1)
    cycle(db, at + 2 * MIN)
    with db.connect() as conn:
        kinds = [e["kind"] for e in list_timeline(conn, incident_id=incident.id)]
    assert kinds == ["opened", "alert_resolved"]


def test_it_raises_severity_on_saturday_for_weekend_rules(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, SATURDAY, severity_level="high", weekend_escalation=True)
    point(db, SATURDAY - timedelta(seconds=5), 500)
    report = cycle(db, SATURDAY)
    assert instances(db)[0]["severity"] == "critical" and report.incidents == 1


def test_it_skips_invalid_and_disabled_rules(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, NOW, is_enabled=False)
    point(db, NOW - timedelta(seconds=5), 500)
    report = cycle(db, NOW)
    assert report.rules == 0 and instances(db) == []


def test_it_lists_active_alerts_by_severity_then_age(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, NOW, alert_name="low one", severity_level="low")
        threshold_rule(conn, NOW, alert_name="critical one", severity_level="critical")
    point(db, NOW - timedelta(seconds=5), 500)
    cycle(db, NOW)
    with db.connect() as conn:
        active = list_active_alerts(conn)
        count = conn.execute(select(func.count()).select_from(alert_instances)).scalar()
    assert [a["alert_name"] for a in active] == ["critical one", "low one"] and count == 2
    assert {"alert_configuration_id", "trigger_count", "severity_level"} <= set(active[0])


def _error_events(engine: Engine, at: datetime, service: str, n: int) -> None:
    with engine.begin() as conn:
        ensure_partitions(conn, start=at, end=at, tables=("error_events",))
        conn.execute(
            text(
                "INSERT INTO error_events (time, event_id, group_id, error_type, message, "
                "service_name, level, severity) VALUES (:t, gen_random_uuid(), 1, 'CardDeclined', "
                "'declined', :s, 'api', 'high')"
            ),
            [{"t": at - timedelta(seconds=i), "s": service} for i in range(n)],
        )


def test_it_counts_matching_error_events_for_pattern_rules(db: Engine) -> None:
    with db.begin() as conn:
        threshold_rule(conn, NOW, alert_name="Payment failures", cfg={
            "type": "pattern", "metric": None, "filter": {"service": "payments"},
            "operator": "greater_than_or_equal", "value": 3, "window_minutes": 5,
            "group_by": ["error_type"],
        })  # fmt: skip
    _error_events(db, NOW - MIN, "payments", 2)
    _error_events(db, NOW - MIN, "photos", 5)  # another service: not counted
    cycle(db, NOW)
    assert [i["status"] for i in instances(db)] == []  # 2 < 3: quiet, and zero is not no-data
    _error_events(db, NOW + MIN, "payments", 1)
    cycle(db, NOW + MIN)
    assert [(i["alert_key"], i["status"], i["trigger_value"]) for i in instances(db)] == [
        ("error_type=CardDeclined", "firing", 3)
    ]
