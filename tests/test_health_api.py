"""Health routes through the real API: admin checks, heartbeat pings, live health."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from monitoring_core.schema import audit_log, health_check_results

ADMIN = "/api/admin/monitoring/health"


def _client(api_server: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {key}"})


def test_it_adds_lists_and_changes_checks(api_server: str, admin_key: str, engine: Engine) -> None:
    with _client(api_server, admin_key) as api:
        made = api.post(
            ADMIN + "/checks",
            json={
                "check_name": "Vendor search",
                "check_type": "http",
                "check_config": {"url": f"{api_server}/healthz", "keyword": "ok"},
                "service_name": "api",
                "check_frequency_seconds": 60,
                "timeout_seconds": 2,
                "wedding_critical": True,
            },
        )
        assert made.status_code == 201, made.text
        check = made.json()
        assert check["status"] == "unknown" and check["ping_url"] is None
        run = api.post(f"{ADMIN}/checks/{check['id']}/run")
        assert run.json()["success"] is True and run.json()["status"] == "healthy"
        changed = api.put(f"{ADMIN}/checks/{check['id']}", json={"retries": 5, "is_enabled": False})
        assert changed.status_code == 200
        assert (changed.json()["retries"], changed.json()["is_enabled"]) == (5, False)
        assert changed.json()["check_config"]["keyword"] == "ok"  # untouched fields stay
        listed = api.get(ADMIN).json()["checks"]
        assert [c["check_name"] for c in listed] == ["Vendor search"]
        assert listed[0]["uptime_24h"] == 1.0 and listed[0]["response_time_ms"] > 0
        history = api.get(ADMIN + "/history", params={"check_id": check["id"]}).json()
        assert history["kind"] == "results" and history["items"][0]["success"] is True
        flips = api.get(ADMIN + "/history", params={"timeRange": "7d"}).json()["items"]
        assert [(f["from_status"], f["to_status"]) for f in flips] == [("unknown", "healthy")]
        assert api.put(f"{ADMIN}/checks/999999", json={"retries": 1}).status_code == 404
        assert api.post(f"{ADMIN}/checks/999999/run").status_code == 404
    with engine.connect() as conn:
        actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars().all()
    assert actions == ["health_check.create", "health_check.update"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"check_type": "http", "check_config": {"url": "http://x"}}, {"check_name"}),
        ({"check_name": "a", "check_type": "smtp"}, {"check_type"}),
        (
            {"check_name": "a", "check_type": "http", "check_config": {"url": "ftp://x"}},
            {"check_config.url"},
        ),
        (
            {"check_name": "a", "check_type": "tcp", "check_config": {"host": "db", "port": 0}},
            {"check_config.port"},
        ),
        (
            {"check_name": "a", "check_type": "heartbeat", "check_config": {}},
            {"check_config.period_seconds"},
        ),
        (
            {"check_name": "a", "check_type": "custom", "check_config": {"callable": "nope"}},
            {"check_config.callable"},
        ),
        (
            {"check_name": "a", "check_type": "database", "check_config": {"url": "not a url"}},
            {"check_config.url"},
        ),
        (
            {
                "check_name": "a",
                "check_type": "tcp",
                "check_config": {"host": "h", "port": 1},
                "retries": -1,
                "colour": "red",
            },
            {"retries", "colour"},
        ),
        ({"check_name": "a", "check_type": "http", "check_config": []}, {"check_config"}),
    ],
)
def test_it_rejects_invalid_checks_with_422(
    api_server: str, admin_key: str, body: dict[str, Any], fields: set[str]
) -> None:
    with _client(api_server, admin_key) as api:
        reply = api.post(ADMIN + "/checks", json=body)
    assert reply.status_code == 422
    assert {e["field"] for e in reply.json()["detail"]} == fields


def test_it_refuses_a_duplicate_name_and_bad_json(api_server: str, admin_key: str) -> None:
    body = {"check_name": "db", "check_type": "tcp", "check_config": {"host": "h", "port": 5432}}
    with _client(api_server, admin_key) as api:
        assert api.post(ADMIN + "/checks", json=body).status_code == 201
        again = api.post(ADMIN + "/checks", json=body)
        assert again.status_code == 422 and again.json()["detail"][0]["field"] == "check_name"
        assert api.post(ADMIN + "/checks", content=b"{nope").status_code == 400


def test_it_needs_an_admin_key(api_server: str, ingest_key: str) -> None:
    assert httpx.get(api_server + ADMIN).status_code == 401
    with _client(api_server, ingest_key) as api:
        assert api.get(ADMIN).status_code == 403
        assert api.get("/api/monitoring/live/health").status_code == 403  # ingest keys only write


def test_it_takes_heartbeat_pings_without_a_key(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    with _client(api_server, admin_key) as api:
        made = api.post(
            ADMIN + "/checks",
            json={
                "check_name": "nightly backup",
                "check_type": "heartbeat",
                "check_config": {"period_seconds": 600, "grace_seconds": 60},
                "service_name": "backups",
            },
        ).json()
    url = made["ping_url"]
    assert url.startswith(api_server + "/api/monitoring/heartbeat/")
    assert httpx.get(url).text == "OK"
    assert httpx.post(url + "/start").status_code == 200
    assert httpx.head(url).status_code == 200
    assert httpx.get(url + "/fail").status_code == 200
    assert httpx.get(url + "/0").status_code == 200  # exit status 0: success again
    assert httpx.post(url + "/3").status_code == 200  # exit status 3: failed
    assert httpx.get(url + "/256").status_code == 400
    assert httpx.get(url + "/later").status_code == 400
    assert httpx.get(api_server + "/api/monitoring/heartbeat/unknown").status_code == 404
    with _client(api_server, admin_key) as api:
        live = api.get("/api/monitoring/live/health").json()
    assert live["by_status"]["critical"] == 1
    assert live["problems"][0]["check_name"] == "nightly backup"
    with engine.connect() as conn:
        results = conn.execute(select(health_check_results.c.success)).scalars().all()
    # success, HEAD success, fail, exit 0, exit 3: start adds no result
    assert sorted(results) == [False, False, True, True, True]


def test_it_hides_database_passwords(api_server: str, admin_key: str) -> None:
    with _client(api_server, admin_key) as api:
        made = api.post(
            ADMIN + "/checks",
            json={
                "check_name": "platform db",
                "check_type": "database",
                "check_config": {"url": "postgresql+psycopg://app:s3cret@db.internal/platform"},
            },
        ).json()
        listed = api.get(ADMIN).json()["checks"][0]
    assert "s3cret" not in str(made) and "s3cret" not in str(listed)
    assert made["check_config"]["url"] == "postgresql+psycopg://app:***@db.internal/platform"


COLLECTORS = "/api/admin/monitoring/collectors"


def test_it_manages_collectors(api_server: str, admin_key: str, engine: Engine) -> None:
    with _client(api_server, admin_key) as api:
        made = api.post(
            COLLECTORS,
            json={
                "name": "Users by role",
                "url": "postgresql+psycopg://reader:hunter2@platform-db/platform",
                "query": "SELECT role, count(*) AS value FROM users GROUP BY role",
                "metric_name": "platform_users",
                "interval_seconds": 300,
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["url"] == "postgresql+psycopg://reader:***@platform-db/platform"
        scrape = api.post(
            COLLECTORS,
            json={"name": "api", "kind": "prometheus_scrape", "url": f"{api_server}/metrics"},
        )
        assert scrape.status_code == 201
        changed = api.put(f"{COLLECTORS}/{made.json()['id']}", json={"is_enabled": False})
        assert changed.json()["is_enabled"] is False
        assert api.put(f"{COLLECTORS}/999999", json={"is_enabled": False}).status_code == 404
        listed = api.get(COLLECTORS).json()["collectors"]
    assert sorted(c["name"] for c in listed) == ["Users by role", "api"]
    assert "hunter2" not in str(listed)
    with engine.connect() as conn:
        details = conn.execute(select(audit_log.c.details)).scalars().all()
    assert "hunter2" not in str(details)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"url": "self", "query": "SELECT 1"}, {"name"}),
        ({"name": "a", "url": "self"}, {"query"}),
        ({"name": "a", "kind": "snmp", "url": "self"}, {"kind"}),
        ({"name": "a", "kind": "prometheus_scrape", "url": "self"}, {"url"}),
        ({"name": "a", "url": "nope", "query": "SELECT 1"}, {"url"}),
        (
            {"name": "a", "url": "self", "query": "SELECT 1", "metric_name": "9 bad"},
            {"metric_name"},
        ),
        (
            {"name": "a", "url": "self", "query": "SELECT 1", "interval_seconds": 1},
            {"interval_seconds"},
        ),
        ({"name": "a", "url": "self", "query": "SELECT 1", "owner": "me"}, {"owner"}),
    ],
)
def test_it_rejects_invalid_collectors(
    api_server: str, admin_key: str, body: dict[str, Any], fields: set[str]
) -> None:
    with _client(api_server, admin_key) as api:
        reply = api.post(COLLECTORS, json=body)
    assert reply.status_code == 422
    assert {e["field"] for e in reply.json()["detail"]} == fields
