"""The incident API on a real server: docs/API.md routes, fields, refusals, keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from monitoring_core import clock
from tests.clock_support import off_wedding_day

BASE = "/api/admin/incidents"
NEW = {
    "title": "Vendor search timing out",
    "severity": "SEV2",
    "affected_services": ["search"],
    "affected_users_count": 40,
    "tags": ["search"],
    "description": "p95 over 5 s",
}
API_FIELDS = {
    "id", "incident_number", "title", "description", "severity", "status", "affected_services",
    "affected_users_count", "root_cause", "resolution_summary", "detected_at", "acknowledged_at",
    "resolved_at", "closed_at", "assigned_to", "created_by", "tags",
}  # fmt: skip


@pytest.fixture
def weekday_clock(test_instant: datetime) -> Iterator[datetime]:
    """The API's clock stands at the test instant, off Saturdays (when steps wait for approval)."""
    with clock.frozen(off_wedding_day(test_instant)) as moment:
        yield moment


def call(method: str, url: str, key: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", BASE),
        ("POST", BASE),
        ("GET", BASE + "/1"),
        ("PUT", BASE + "/1"),
        ("PUT", BASE + "/1/status"),
        ("POST", BASE + "/1/timeline"),
        ("POST", BASE + "/1/resolve"),
        ("POST", BASE + "/1/acknowledge"),
        ("GET", BASE + "/report"),
        ("POST", BASE + "/1/postmortem"),
        ("GET", BASE + "/1/postmortem"),
        ("GET", "/api/admin/runbooks"),
        ("POST", "/api/admin/runbooks"),
        ("POST", BASE + "/1/runbooks/1/steps/0"),
        ("POST", "/api/admin/runbook-executions/1/approve"),
    ],
)
def test_it_needs_an_admin_key_on_every_admin_route(
    api_server: str, ingest_key: str, method: str, path: str
) -> None:
    assert call(method, api_server + path, None, {}).status_code == 401
    assert call(method, api_server + path, ingest_key, {}).status_code == 403


def test_it_serves_the_active_list_to_keys_that_read(
    api_server: str, ingest_key: str, admin_key: str
) -> None:
    url = f"{api_server}/api/monitoring/incidents/active"
    assert call("GET", url, None).status_code == 401
    assert call("GET", url, ingest_key).status_code == 403  # ingest keys only write
    reply = call("GET", url, admin_key)
    assert reply.status_code == 200 and reply.json() == {"incidents": []}


def test_it_runs_an_incident_through_the_api(api_server: str, admin_key: str) -> None:
    created = call("POST", api_server + BASE, admin_key, NEW)
    assert created.status_code == 201, created.text
    inc = created.json()
    assert API_FIELDS <= set(inc)
    assert inc["incident_number"].startswith("INC-") and inc["status"] == "open"
    assert inc["created_by"] == "apikey:test-admin" and inc["affected_users_count"] == 40
    url = f"{api_server}{BASE}/{inc['id']}"
    active = call("GET", f"{api_server}/api/monitoring/incidents/active", admin_key).json()
    assert [i["id"] for i in active["incidents"]] == [inc["id"]]
    assert active["incidents"][0]["response"]["target"] == "acknowledge"

    moved = call("PUT", url + "/status", admin_key, {"status": "investigating", "message": "on it"})
    assert moved.status_code == 200 and moved.json()["acknowledged_at"] is not None
    note = call(
        "POST", url + "/timeline", admin_key, {"message": "Index rebuilt", "is_public": True}
    )
    assert note.status_code == 201 and note.json()["is_public"] is True
    resolved = call("POST", url + "/resolve", admin_key, {"resolution_summary": "Index rebuilt"})
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    detail = call("GET", url, admin_key).json()
    assert [e["kind"] for e in detail["timeline"]] == [
        "opened", "status_changed", "note", "resolved",
    ]  # fmt: skip
    assert detail["resolution_summary"] == "Index rebuilt"
    public = call("GET", url + "?public=true", admin_key).json()["timeline"]
    assert [e["kind"] for e in public] == ["status_changed", "note", "resolved"]
    assert call("GET", f"{api_server}/api/monitoring/incidents/active", admin_key).json() == {
        "incidents": []
    }


def test_it_refuses_a_wrong_move_with_409(api_server: str, admin_key: str) -> None:
    inc = call("POST", api_server + BASE, admin_key, NEW).json()
    reply = call("PUT", f"{api_server}{BASE}/{inc['id']}/status", admin_key, {"status": "closed"})
    assert reply.status_code == 409 and "cannot move from open to closed" in reply.text
    ack = f"{api_server}{BASE}/{inc['id']}/acknowledge"
    assert call("POST", ack, admin_key).status_code == 200
    assert call("POST", ack, admin_key).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"severity": "SEV1"}, "title"),
        ({"title": "x", "severity": "P1"}, "severity"),
        ({"title": "x", "severity": "SEV1", "wedding_impact": "big"}, "wedding_impact"),
        ({"title": "x", "severity": "SEV1", "affected_services": "web"}, "affected_services"),
    ],
)
def test_it_rejects_invalid_incidents_with_422_storing_nothing(
    api_server: str, admin_key: str, body: dict, field: str
) -> None:
    reply = call("POST", api_server + BASE, admin_key, body)
    assert reply.status_code == 422
    assert field in {d["field"] for d in reply.json()["detail"]}
    assert call("GET", api_server + BASE, admin_key).json() == {"incidents": []}


def test_it_answers_bad_input_without_a_500(api_server: str, admin_key: str) -> None:
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    bad = httpx.post(api_server + BASE, headers=headers, content=b"{not json", timeout=30)
    assert bad.status_code == 400
    assert call("POST", api_server + BASE, admin_key, [1, 2]).status_code == 422
    assert call("GET", f"{api_server}{BASE}/999", admin_key).status_code == 404
    assert call("POST", f"{api_server}{BASE}/999/resolve", admin_key,
                {"resolution_summary": "x"}).status_code == 404  # fmt: skip
    assert call("GET", f"{api_server}{BASE}?timeRange=2y", admin_key).status_code == 422
    assert call("GET", f"{api_server}{BASE}?limit=-1", admin_key).status_code == 422


def test_it_filters_the_list(api_server: str, admin_key: str) -> None:
    call("POST", api_server + BASE, admin_key, NEW)
    other = {**NEW, "severity": "SEV1", "affected_services": ["payments"], "title": "Pay"}
    sev1 = call("POST", api_server + BASE, admin_key, other).json()
    by = call("GET", f"{api_server}{BASE}?severity=SEV1", admin_key).json()["incidents"]
    assert [i["id"] for i in by] == [sev1["id"]]
    svc = call("GET", f"{api_server}{BASE}?service=payments&timeRange=24h", admin_key).json()
    assert [i["id"] for i in svc["incidents"]] == [sev1["id"]]
    assert len(call("GET", f"{api_server}{BASE}?status=open", admin_key).json()["incidents"]) == 2


@pytest.mark.clock
def test_it_reports_drafts_and_runs_runbooks_over_the_api(
    api_server: str, admin_key: str, weekday_clock: datetime
) -> None:
    inc = call("POST", api_server + BASE, admin_key, NEW).json()
    url = f"{api_server}{BASE}/{inc['id']}"
    call("PUT", url + "/status", admin_key, {"status": "investigating"})
    call("POST", url + "/resolve", admin_key, {"resolution_summary": "Index rebuilt"})
    clock.set_now(weekday_clock + timedelta(minutes=5))  # the report is read a while later
    rep = call("GET", f"{api_server}{BASE}/report?timeRange=7d", admin_key)
    assert rep.status_code == 200 and rep.json()["totals"]["incidents"] == 1
    assert call("GET", f"{api_server}{BASE}/report?timeRange=1y", admin_key).status_code == 422
    assert call("GET", url + "/postmortem", admin_key).status_code == 404
    drafted = call("POST", url + "/postmortem", admin_key)
    assert drafted.status_code == 200 and drafted.headers["content-type"].startswith(
        "text/markdown"
    )
    assert "Index rebuilt" in drafted.text
    assert call("GET", url + "/postmortem", admin_key).text == drafted.text

    book = {"title": "Search", "service_name": "search", "steps": [{"title": "Look at p95"}]}
    created = call("POST", f"{api_server}/api/admin/runbooks", admin_key, book)
    assert created.status_code == 201, created.text
    bad = call(
        "POST", f"{api_server}/api/admin/runbooks", admin_key, {**book, "alert_rule_id": "x"}
    )
    assert bad.status_code == 422
    step = f"{url}/runbooks/{created.json()['id']}/steps/0"
    ran = call("POST", step, admin_key)
    assert ran.status_code == 200 and ran.json()["status"] == "succeeded"
    assert call("POST", step.replace("/steps/0", "/steps/5"), admin_key).status_code == 409
    listed = call("GET", f"{api_server}/api/admin/runbooks", admin_key).json()["runbooks"]
    assert listed[0]["success_rate"] == 1.0


def test_it_approves_a_waiting_step_only_with_a_second_key(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        second = create_api_key(conn, name="second-admin", scope=ApiScope.ADMIN)
    inc = call("POST", api_server + BASE, admin_key, NEW).json()
    book = {"title": "Search", "requires_approval": True, "steps": [{"title": "Pause rebuild"}]}
    rb = call("POST", f"{api_server}/api/admin/runbooks", admin_key, book).json()
    waiting = call("POST", f"{api_server}{BASE}/{inc['id']}/runbooks/{rb['id']}/steps/0", admin_key)
    assert waiting.status_code == 202 and waiting.json()["status"] == "awaiting_approval"
    approve = f"{api_server}/api/admin/runbook-executions/{waiting.json()['id']}/approve"
    assert call("POST", approve, admin_key).status_code == 409  # the requester cannot approve
    done = call("POST", approve, second)
    assert done.status_code == 200 and done.json()["approved_by"] == "apikey:second-admin"
    assert done.json()["status"] == "succeeded"
