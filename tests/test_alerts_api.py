"""The alerting API on a real server: rules, test against history, actions, channels, live."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert

from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.schema import metric_catalog
from tests.alerting_support import webhook_receiver
from tests.rollup_fixtures import roll_up_now

RULE = {
    "alert_name": "Checkout slow",
    "metric_name": "checkout_latency_ms",
    "condition_config": {
        "type": "threshold", "metric": "checkout_latency_ms", "aggregation": "avg",
        "operator": "greater_than", "value": 100, "window_minutes": 1,
    },
    "severity_level": "high",
    "notification_channels": [],
    "is_enabled": True,
}  # fmt: skip


@pytest.fixture(autouse=True)
def checkout_metric(engine: Engine) -> None:
    """Rules may name only known signals: the metric these rules watch is in the catalog."""
    with engine.begin() as conn:
        conn.execute(insert(metric_catalog).values(name="checkout_latency_ms", unit="ms"))


@pytest.fixture
def now(real_now: datetime) -> datetime:
    """The real time: the API server stamps and reads its data on the real clock."""
    return real_now


def call(method: str, url: str, key: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


def test_it_needs_an_admin_key(api_server: str, ingest_key: str) -> None:
    assert call("GET", f"{api_server}/api/admin/monitoring/alerts", None).status_code == 401
    assert call("GET", f"{api_server}/api/admin/monitoring/alerts", ingest_key).status_code == 403
    assert (
        call("POST", f"{api_server}/api/admin/alerts/1/acknowledge", ingest_key).status_code == 403
    )
    assert call("POST", f"{api_server}/api/admin/channels", ingest_key, {}).status_code == 403


def test_it_creates_lists_updates_and_deletes_rules(api_server: str, admin_key: str) -> None:
    base = f"{api_server}/api/admin/monitoring/alerts"
    created = call("POST", base, admin_key, RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert {k: rule[k] for k in ("alert_name", "severity_level", "is_enabled")} == {
        "alert_name": "Checkout slow", "severity_level": "high", "is_enabled": True,
    }  # fmt: skip
    assert [r["id"] for r in call("GET", base, admin_key).json()["alerts"]] == [rule["id"]]
    changed = call("PUT", f"{base}/{rule['id']}", admin_key, {"is_enabled": False})
    assert changed.status_code == 200 and changed.json()["is_enabled"] is False
    assert call("DELETE", f"{base}/{rule['id']}", admin_key).status_code == 204
    assert call("DELETE", f"{base}/{rule['id']}", admin_key).status_code == 404
    assert call("PUT", f"{base}/999", admin_key, {"is_enabled": True}).status_code == 404


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"severity_level": "urgent"}, "severity_level"),
        ({"alert_name": ""}, "alert_name"),
        ({"condition_config": {"type": "threshold", "value": 1}}, "condition_config.metric"),
        ({"notification_channels": [42]}, "notification_channels"),
        ({"escalation_policy": "nope"}, "escalation_policy"),
    ],
)
def test_it_rejects_invalid_rules_with_422(
    api_server: str, admin_key: str, patch: dict, field: str
) -> None:
    reply = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, {**RULE, **patch})
    assert reply.status_code == 422
    assert field in [d["field"] for d in reply.json()["detail"]]


def test_it_answers_400_for_malformed_json(api_server: str, admin_key: str) -> None:
    reply = httpx.post(f"{api_server}/api/admin/monitoring/alerts", content=b"{nope",
                       headers={"Authorization": f"Bearer {admin_key}"})  # fmt: skip
    assert reply.status_code == 400


def test_it_manages_and_tests_channels(api_server: str, admin_key: str) -> None:
    with webhook_receiver() as hook:
        url = hook.json_url("hook").replace("json://", "json://user:topsecret@")
        created = call(
            "POST", f"{api_server}/api/admin/channels", admin_key, {"name": "ops", "url": url}
        )
        assert created.status_code == 201 and "topsecret" not in created.text
        channel_id = created.json()["id"]
        tested = call("POST", f"{api_server}/api/admin/channels/{channel_id}/test", admin_key)
        assert tested.status_code == 200 and tested.json()["ok"] is True
        assert hook.titles() == ["Test notification for channel ops"]
    listed = call("GET", f"{api_server}/api/admin/channels", admin_key)
    assert "topsecret" not in listed.text and listed.json()["channels"][0]["name"] == "ops"
    bad = call(
        "POST", f"{api_server}/api/admin/channels", admin_key, {"name": "x", "url": "nope://"}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "url"
    assert call("POST", f"{api_server}/api/admin/channels/999/test", admin_key).status_code == 404


def test_it_deletes_only_a_channel_nothing_uses(api_server: str, admin_key: str) -> None:
    channels = f"{api_server}/api/admin/channels"
    channel_id = call(
        "POST", channels, admin_key, {"name": "ops", "url": "json://127.0.0.1:9/x"}
    ).json()["id"]
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key,
                {**RULE, "notification_channels": [channel_id]}).json()  # fmt: skip
    refused = call("DELETE", f"{channels}/{channel_id}", admin_key)
    assert refused.status_code == 409 and "alert rule 'Checkout slow'" in refused.text
    assert (
        call(
            "DELETE", f"{api_server}/api/admin/monitoring/alerts/{rule['id']}", admin_key
        ).status_code
        == 204
    )
    assert call("DELETE", f"{channels}/{channel_id}", admin_key).status_code == 204
    assert call("DELETE", f"{channels}/{channel_id}", admin_key).status_code == 404
    assert call("GET", channels, admin_key).json()["channels"] == []


def _breach(api_server: str, ingest_key: str, at: datetime, value: float) -> None:
    reply = call("POST", f"{api_server}/api/monitoring/metrics", ingest_key, {
        "metric_name": "checkout_latency_ms", "metric_value": value, "timestamp": at.isoformat(),
    })  # fmt: skip
    assert reply.status_code == 202, reply.text


def test_it_lists_active_alerts_and_takes_actions(
    api_server: str, admin_key: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, RULE).json()
    _breach(api_server, ingest_key, now - timedelta(seconds=2), 500)
    run_evaluation(engine, now)
    (alert,) = call("GET", f"{api_server}/api/admin/alerts/active", admin_key).json()["alerts"]
    assert alert["alert_configuration_id"] == rule["id"] and alert["status"] == "firing"
    assert {"alert_key", "trigger_count", "first_triggered_at", "trigger_value", "alert_name",
            "severity_level", "trigger_dimensions", "resolved_at"} <= set(alert)  # fmt: skip
    live = call("GET", f"{api_server}/api/monitoring/live/alerts", admin_key).json()
    assert live["total"] == 1 and live["counts"] == {"high": 1}
    base = f"{api_server}/api/admin/alerts/{alert['id']}"
    assert call("POST", f"{base}/escalate", admin_key).status_code == 409  # no policy
    assert call("POST", f"{base}/suppress", admin_key, {"minutes": 0}).status_code == 422
    acked = call("POST", f"{base}/acknowledge", admin_key)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"].startswith("apikey:")
    suppressed = call("POST", f"{base}/suppress", admin_key, {"minutes": 30, "reason": "deploy"})
    assert suppressed.status_code == 200 and suppressed.json()["status"] == "suppressed"
    assert (
        call("POST", f"{api_server}/api/admin/alerts/999/acknowledge", admin_key).status_code == 404
    )


def test_it_tests_a_rule_against_history(
    api_server: str, admin_key: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, RULE).json()
    for minutes_ago, value in ((30, 50), (20, 400), (10, 60)):
        _breach(api_server, ingest_key, now - timedelta(minutes=minutes_ago), value)

    # the server stamped ingested_at with its own clock, after `now`: roll up to the real now
    roll_up_now(engine)
    reply = call("POST", f"{api_server}/api/admin/monitoring/alerts/{rule['id']}/test", admin_key,
                 {"timeRange": "1h"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["fired_count"] == 1
    fired_at = datetime.fromisoformat(result["fired"][0]["time"])
    assert now - timedelta(minutes=21) <= fired_at <= now - timedelta(minutes=18)
    assert result["fired"][0]["value"] == 400 and result["fired"][0]["threshold"] == 100
    assert call("GET", f"{api_server}/api/admin/alerts/active", admin_key).json()["alerts"] == []
    bad = call("POST", f"{api_server}/api/admin/monitoring/alerts/{rule['id']}/test", admin_key,
               {"timeRange": "2 fortnights"})  # fmt: skip
    assert bad.status_code == 422


def test_it_tests_a_rule_at_the_step_asked_for(
    api_server: str, admin_key: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, RULE).json()
    _breach(api_server, ingest_key, now - timedelta(minutes=20), 400)
    url = f"{api_server}/api/admin/monitoring/alerts/{rule['id']}/test"
    default = call("POST", url, admin_key, {"timeRange": "1h"})
    assert default.status_code == 200 and default.json()["step_seconds"] == 15  # live cadence
    for asked, used in ((60, 60), ("300", 300), (15.0, 15), (30, 30)):
        reply = call("POST", url, admin_key, {"timeRange": "1h", "step": asked})
        assert reply.status_code == 200, reply.text
        assert reply.json()["step_seconds"] == used
        assert reply.json()["evaluated_steps"] <= 3600 // used + 1
    by_query = call("POST", f"{url}?step=120&timeRange=1h", admin_key)
    assert by_query.status_code == 200 and by_query.json()["step_seconds"] == 120
    for wrong in (10, 45, 0, -60, "fast", True, None, [60], 1.5, 90_000, "nan"):
        reply = call("POST", url, admin_key, {"timeRange": "1h", "step": wrong})
        if wrong is None:  # no step: the default
            assert reply.status_code == 200
            continue
        assert reply.status_code == 422, (wrong, reply.text)
        assert reply.json()["detail"][0]["field"] == "step", wrong
    start, end = (now - timedelta(days=200)).isoformat(), now.isoformat()
    too_many = call("POST", url, admin_key, {"from": start, "to": end, "step": 15})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["field"] == "step"


def test_it_tests_a_composite_rule_against_history(api_server: str, admin_key: str) -> None:
    child = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, RULE).json()
    both = {**RULE, "alert_name": "Both", "metric_name": None,
            "condition_config": {"type": "composite", "logic": "and", "rules": [child["id"]]}}  # fmt: skip
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, both).json()
    reply = call("POST", f"{api_server}/api/admin/monitoring/alerts/{rule['id']}/test", admin_key,
                 {"timeRange": "1h"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["fired_count"] == 0 and len(reply.json()["series"]) == 1
    orphan = {**both, "condition_config": {"type": "composite", "rules": [child["id"], 99999]}}
    rule = call("POST", f"{api_server}/api/admin/monitoring/alerts", admin_key, orphan).json()
    reply = call("POST", f"{api_server}/api/admin/monitoring/alerts/{rule['id']}/test", admin_key)
    assert reply.status_code == 422 and "no alert rule with id 99999" in reply.text


def test_it_adds_silences_and_policies(api_server: str, admin_key: str) -> None:
    silence = call("POST", f"{api_server}/api/admin/silences", admin_key, {
        "matchers": [{"name": "service", "value": "payments"}], "duration_minutes": 30,
        "reason": "deploy", "recurrence": {"weekday": 1, "start": "02:00", "end": "03:00"},
    })  # fmt: skip
    assert silence.status_code == 201, silence.text
    assert len(call("GET", f"{api_server}/api/admin/silences", admin_key).json()["silences"]) == 1
    bad = call("POST", f"{api_server}/api/admin/silences", admin_key, {"matchers": "x"})
    assert bad.status_code == 422
    policy = {"name": "Default", "steps": [{"after_minutes": 0, "channels": []}]}
    assert (
        call("POST", f"{api_server}/api/admin/escalation-policies", admin_key, policy).status_code
        == 201
    )
    assert (
        call("POST", f"{api_server}/api/admin/escalation-policies", admin_key, policy).status_code
        == 422
    )
    bad_steps = {"name": "x", "steps": [{"after_minutes": -5}]}
    assert (
        call(
            "POST", f"{api_server}/api/admin/escalation-policies", admin_key, bad_steps
        ).status_code
        == 422
    )
