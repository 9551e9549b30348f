"""A check's detail through the real API: the ping log (no bodies), pause and resume (issue 18.5)."""

from __future__ import annotations

import hashlib
from datetime import datetime

import httpx
from sqlalchemy import Engine, select

from monitoring_core.health.rules import cron_next
from monitoring_core.schema import audit_log, health_check_pings

ADMIN = "/api/admin/monitoring/health"
CRON = {"schedule": "0 3 * * *", "tz": "Europe/London", "grace_seconds": 3600}


def _client(api_server: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {key}"})


def test_it_logs_pings_without_their_bodies(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    with _client(api_server, admin_key) as api:
        made = api.post(
            ADMIN + "/checks",
            json={"check_name": "nightly export", "check_type": "heartbeat", "check_config": CRON},
        )
        assert made.status_code == 201, made.text
        check = made.json()
        assert check["schedule"] == "cron 0 3 * * * (Europe/London), 1 h grace"
        url = check["ping_url"]
        output = b"exported 1,204 rows; password=hunter2\n"
        assert httpx.post(url + "/start", headers={"user-agent": "cron-job/1"}).text == "OK"
        assert httpx.post(url, content=output).text == "OK"
        assert httpx.get(url + "/3").text == "OK"  # exit status 3: a failure
        detail = api.get(f"{ADMIN}/checks/{check['id']}", params={"timeRange": "1h"})
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert api.get(f"{ADMIN}/checks/987654321").status_code == 404
        assert (
            api.get(f"{ADMIN}/checks/{check['id']}", params={"timeRange": "9x"}).status_code == 400
        )
    pings = body["pings"]
    assert [(p["kind"], p["exit_status"], p["method"]) for p in pings] == [
        ("fail", 3, "GET"),
        ("success", None, "POST"),
        ("start", None, "POST"),
    ]
    fail, success, start = pings
    assert start["user_agent"] == "cron-job/1" and start["source"] == "127.0.0.1"
    assert success["duration_s"] is not None and 0 <= success["duration_s"] < 60  # since /start
    assert fail["duration_s"] is None  # no /start before it since the last ping
    assert success["body_bytes"] == len(output)
    assert success["body_sha256"] == hashlib.sha256(output).hexdigest()
    assert "hunter2" not in str(body)  # bodies are never stored or shown
    with engine.connect() as conn:
        assert "hunter2" not in str(conn.execute(select(health_check_pings)).all())
    assert body["check"]["status"] == "critical"
    assert body["last_ping_at"] == fail["time"]
    due = cron_next("0 3 * * *", "Europe/London", datetime.fromisoformat(fail["time"]))
    assert datetime.fromisoformat(body["next_expected_at"]) == due
    assert [b["status"] for b in body["bands"]][-1] == "critical"
    assert body["grace_seconds"] == 3600


def test_it_pauses_and_resumes_and_a_ping_resumes(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    with _client(api_server, admin_key) as api:
        check = api.post(
            ADMIN + "/checks",
            json={
                "check_name": "hourly sync",
                "check_type": "heartbeat",
                "check_config": {"period_seconds": 3600, "grace_seconds": 300},
            },
        ).json()
        path = f"{ADMIN}/checks/{check['id']}"
        paused = api.post(path + "/pause")
        assert paused.status_code == 200, paused.text
        assert (paused.json()["status"], paused.json()["paused"]) == ("paused", True)
        assert api.post(path + "/pause").json()["status"] == "paused"  # idempotent, audited once
        assert api.post(path + "/run").status_code == 409
        listed = api.get(ADMIN).json()["checks"][0]
        assert listed["paused"] is True and listed["next_expected_at"] is None
        resumed = api.post(path + "/resume").json()
        assert (resumed["status"], resumed["paused"]) == ("unknown", False)
        api.post(path + "/pause")
        assert httpx.get(check["ping_url"]).text == "OK"  # the job pinged: resumed
        after = api.get(path).json()["check"]
        assert (after["status"], after["paused"]) == ("healthy", False)
        assert api.post(f"{ADMIN}/checks/987654321/pause").status_code == 404
        assert api.post(f"{ADMIN}/checks/987654321/resume").status_code == 404
        assert api.post(f"{ADMIN}/checks/0/pause").status_code == 422
    with engine.connect() as conn:
        audited = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.target).order_by(
                audit_log.c.id
            )
        ).all()
    target = str(check["id"])
    assert [tuple(a) for a in audited] == [
        ("apikey:test-admin", "health_check.create", target),
        ("apikey:test-admin", "health_check.pause", target),
        ("apikey:test-admin", "health_check.resume", target),
        ("apikey:test-admin", "health_check.pause", target),
        ("system:heartbeat", "health_check.resume", target),
    ]


def test_pause_needs_an_admin_key(api_server: str, ingest_key: str) -> None:
    assert httpx.post(api_server + ADMIN + "/checks/1/pause").status_code == 401
    with _client(api_server, ingest_key) as api:
        assert api.post(ADMIN + "/checks/1/pause").status_code == 403
        assert api.get(ADMIN + "/checks/1").status_code == 403
