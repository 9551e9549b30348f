"""Alerts from Prometheus/Grafana (Alertmanager API v2 and webhook payloads) as our alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, select, update

from monitoring_core.alerts.silences import create_silence
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.flows.external_alerts import expire_external, receive_alerts
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.prometheus.alertmanager import alert_key, parse_alerts, severity_of
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    incident_alerts,
    incidents,
    notification_outbox,
)
from tests.alerting_support import channel

TZ = ZoneInfo("Europe/London")
URL = "http://ui.example"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alert(name: str, *, ends: datetime | None = None, **labels: str) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} is bad"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }
    if ends is not None:
        alert["endsAt"] = _iso(ends)
    return alert


def _instances(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_instances)).all()
    return {row.alert_key: dict(row._mapping) for row in rows}


def test_it_fires_dedups_and_resolves_alerts_posted_like_prometheus(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    headers = {"Authorization": f"Bearer {ingest_key}"}
    firing = [
        _alert("HighLatency", ends=real_now + timedelta(minutes=4), job="api", severity="critical"),
        _alert("HighLatency", ends=real_now + timedelta(minutes=4), job="web", severity="warning"),
    ]
    for _ in range(2):  # Prometheus re-sends firing alerts every evaluation
        response = httpx.post(f"{api_server}/api/v2/alerts", json=firing, headers=headers)
        assert response.status_code == 200, response.text
    instances = _instances(engine)
    assert set(instances) == {"job=api,severity=critical", "job=web,severity=warning"}
    api = instances["job=api,severity=critical"]
    assert (api["status"], api["severity"], api["trigger_count"]) == ("firing", "critical", 2)
    assert instances["job=web,severity=warning"]["severity"] == "medium"
    assert api["external_ends_at"] is not None
    with engine.connect() as conn:
        rule = conn.execute(select(alert_rules)).one()
        linked = conn.execute(select(incident_alerts.c.incident_id)).scalars().all()
    assert rule.alert_name == "HighLatency" and rule.condition_config == {"type": "external"}
    assert len(linked) == 1  # the critical one opened an incident, the warning did not
    resolved = [
        _alert("HighLatency", ends=real_now - timedelta(seconds=1), job="api", severity="critical")
    ]
    response = httpx.post(f"{api_server}/api/v2/alerts", json=resolved, headers=headers)
    assert response.json()["resolved"] == 1
    assert _instances(engine)["job=api,severity=critical"]["status"] == "resolved"


def test_it_takes_an_alertmanager_webhook_payload(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    webhook = {
        "version": "4",
        "status": "firing",
        "receiver": "monitoring",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "alerts": [
            {**_alert("DiskFull", instance="db1"), "status": "firing", "startsAt": _iso(real_now)},
            {**_alert("DiskFull", instance="db2"), "status": "resolved"},
        ],
    }
    response = httpx.post(
        f"{api_server}/api/v2/alerts", json=webhook, auth=("alertmanager", ingest_key)
    )
    assert response.status_code == 200, response.text
    assert response.json()["fired"] == 1 and response.json()["ignored"] == 1
    assert _instances(engine)["instance=db1"]["status"] == "firing"


def test_it_refuses_alerts_without_a_name_with_422(api_server: str, ingest_key: str) -> None:
    response = httpx.post(
        f"{api_server}/api/v2/alerts",
        json=[{"labels": {"job": "x"}}, {"labels": "nope"}],
        headers={"X-API-Key": ingest_key},
    )
    assert response.status_code == 422
    fields = [(e["index"], e["field"]) for e in response.json()["detail"]]
    assert fields == [(0, "labels.alertname"), (1, "labels")]


def test_it_routes_silences_and_expires_like_our_own_alerts(engine: Engine, now: datetime) -> None:
    alerts = parse_alerts([_alert("QueueStuck", queue="emails")], now=now)
    with engine.begin() as conn:
        receive_alerts(conn, alerts, now=now, tz=TZ, public_url=URL)
        hook = channel(conn, "json://127.0.0.1:9/hook")
        conn.execute(update(alert_rules).values(notification_channels=[hook]))
        create_silence(
            conn,
            matchers=[{"name": "queue", "value": "sms", "is_regex": False}],
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=1),
            reason="maintenance",
            created_by="test",
        )
        later = [_alert("QueueStuck", queue="sms"), _alert("QueueStuck", queue="push")]
        receive_alerts(conn, parse_alerts(later, now=now), now=now, tz=TZ, public_url=URL)
        sent = conn.execute(select(notification_outbox.c.alert_instance_id)).scalars().all()
    instances = _instances(engine)
    assert {k: v["status"] for k, v in instances.items()} == {
        "queue=emails": "firing",
        "queue=sms": "firing",
        "queue=push": "firing",
    }
    assert sent == [instances["queue=push"]["id"]]  # sms silenced; emails came before the route
    with engine.begin() as conn:  # the rule cycle leaves external alerts to their sender
        report = evaluate_all(conn, now=now + timedelta(minutes=1), tz=TZ, public_url=URL)
        assert report.invalid == [] and report.rules == 0
        # no endsAt: resolve_timeout (5 min) after the last send
        assert expire_external(conn, now=now + timedelta(minutes=4), tz=TZ, public_url=URL) == 0
        assert expire_external(conn, now=now + timedelta(minutes=5), tz=TZ, public_url=URL) == 3
    assert {v["status"] for v in _instances(engine).values()} == {"resolved"}


def test_a_disabled_external_rule_ignores_its_alerts(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        receive_alerts(
            conn, parse_alerts([_alert("Noisy")], now=now), now=now, tz=TZ, public_url=URL
        )
        conn.execute(update(alert_rules).values(is_enabled=False))
        again = parse_alerts([_alert("Noisy", host="b")], now=now)
        report = receive_alerts(conn, again, now=now, tz=TZ, public_url=URL)
        assert conn.execute(select(incidents)).first() is None
    assert report.ignored == 1 and set(_instances(engine)) == {""}


@pytest.mark.parametrize(
    ("labels", "severity"),
    [
        ({"severity": "critical"}, "critical"),
        ({"severity": "warning"}, "medium"),
        ({"priority": "P1"}, "medium"),
        ({"severity": "page"}, "critical"),
        ({}, "medium"),
    ],
)
def test_severity_labels_map_to_ours(labels: dict[str, str], severity: str) -> None:
    assert severity_of(labels) == severity


def test_times_and_keys(now: datetime) -> None:
    zero = {"labels": {"alertname": "A", "b": "1", "a": "2"}, "endsAt": "0001-01-01T00:00:00Z"}
    (alert,) = parse_alerts([zero], now=now)
    assert not alert.resolved and alert.ends_at == now + timedelta(minutes=5)
    assert alert_key(alert.labels) == "a=2,b=1"
    with pytest.raises(InvalidItems, match="RFC 3339"):
        parse_alerts([{"labels": {"alertname": "A"}, "startsAt": "yesterday"}], now=now)
