"""Runbooks: approval rules, a real local HTTP target, notify and health-check steps, timeline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from monitoring_core.health.store import create_check
from monitoring_core.incidents import runbooks, service
from monitoring_core.incidents.store import list_timeline
from monitoring_core.schema import notification_outbox
from monitoring_core.schema import runbooks as runbooks_table
from tests.alerting_support import channel, partitions_around

LONDON = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 6, 16, 9, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 6, 13, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("requires", "wedding_ok", "step_safe", "saturday", "reason"),
    [
        (False, False, False, False, None),
        (True, False, False, False, "the runbook requires approval"),
        (True, True, True, True, "the runbook requires approval"),
        (False, False, False, True, "Saturday: the step is not wedding-day approved"),
        (False, True, False, True, None),
        (False, False, True, True, None),
    ],
)
def test_it_knows_when_a_step_needs_approval(
    requires: bool, wedding_ok: bool, step_safe: bool, saturday: bool, reason: str | None
) -> None:
    book = {"requires_approval": requires, "wedding_day_approved": wedding_ok}
    step = {"wedding_day_safe": step_safe}
    assert runbooks.approval_reason(book, step, is_saturday=saturday) == reason


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ([{"title": "x", "kind": "shell", "config": {}}], "steps[0].kind"),
        ([{"title": "x", "kind": "http", "config": {"url": "file:///etc/passwd"}}], "steps[0].config.url"),
        ([{"title": "x", "kind": "http", "config": {"url": "http://a", "method": "DELETE"}}],
         "steps[0].config.method"),
        ([{"title": "x", "kind": "notify", "config": {"channels": [], "message": "m"}}],
         "steps[0].config.channels"),
        ([{"title": "", "kind": "manual"}], "steps[0].title"),
    ],
)  # fmt: skip
def test_it_rejects_unsafe_or_incomplete_steps(steps: Any, field: str) -> None:
    with pytest.raises(service.IncidentInvalid) as bad:
        runbooks.validate_steps(steps)
    assert field in [p["field"] for p in bad.value.problems]


@pytest.fixture
def target() -> Iterator[dict[str, Any]]:
    """A real local HTTP server: /ok answers 200, /broken 503; requests are recorded."""
    seen: dict[str, Any] = {"paths": []}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen["paths"].append((self.command, self.path))
            code = 503 if self.path.startswith("/broken") else 200
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"cache flushed" if code == 200 else b"down")

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


def _setup(engine: Engine, target: dict, **book: Any) -> tuple[int, dict]:
    with engine.begin() as c:
        inc = service.create_incident(
            c,
            body={"title": "Gallery slow", "severity": "SEV2", "affected_services": ["gallery"]},
            actor="alice",
            role="responder",
            now=TUESDAY,
            tz=LONDON,
        )
        hook = channel(c, "json://127.0.0.1:9/hook")
        check = create_check(
            c,
            {
                "check_name": "gallery",
                "check_type": "http",
                "check_config": {"url": target["url"] + "/ok"},
                "retries": 0,
            },
        )
        steps = [
            {"title": "Check the dashboard", "kind": "manual"},
            {
                "title": "Flush CDN cache",
                "kind": "http",
                "wedding_day_safe": True,
                "config": {"url": target["url"] + "/ok", "method": "POST"},
            },
            {
                "title": "Restart thumbnails",
                "kind": "http",
                "config": {"url": target["url"] + "/broken"},
            },
            {
                "title": "Tell support",
                "kind": "notify",
                "config": {"channels": [hook], "message": "Gallery degraded"},
            },
            {
                "title": "Re-run gallery check",
                "kind": "health_check",
                "config": {"check_id": check.id},
            },
        ]
        rb = runbooks.create_runbook(
            c,
            body={"title": "Gallery", "service_name": "gallery", "steps": steps, **book},
            actor="admin",
            role="admin",
            now=TUESDAY,
        )
    return int(inc["id"]), rb  # fmt: skip


def _run(engine: Engine, incident_id: int, rb: dict, index: int, now: datetime = TUESDAY,
         actor: str = "bob") -> dict[str, Any]:  # fmt: skip
    return runbooks.run_step(engine, incident_id=incident_id, runbook_id=rb["id"], step_index=index,
                             actor=actor, role="responder", now=now, tz=LONDON)  # fmt: skip


def test_it_runs_steps_against_a_real_http_target_and_keeps_the_success_rate(
    engine: Engine, target: dict
) -> None:
    incident_id, rb = _setup(engine, target)
    partitions_around(engine, TUESDAY)  # the health check re-run writes its metric points
    with engine.connect() as c:
        assert [r["id"] for r in runbooks.runbooks_for_incident(c, incident_id=incident_id)] == [
            rb["id"]
        ]
    results = [_run(engine, incident_id, rb, i) for i in range(5)]
    assert [r["status"] for r in results] == [
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]
    assert ("POST", "/ok") in target["paths"] and ("GET", "/broken") in target["paths"]
    assert "-> 200" in results[1]["output"] and "sha256 " in results[1]["output"]
    assert "cache flushed" not in results[1]["output"]  # the body never reaches the timeline
    assert "-> 503" in results[2]["output"]
    assert results[0]["output"] == "checked off by bob"
    with engine.connect() as c:
        book = (
            c.execute(select(runbooks_table).where(runbooks_table.c.id == rb["id"])).one()._mapping
        )
        outbox = c.execute(
            select(notification_outbox.c.kind, notification_outbox.c.incident_id)
        ).all()
        timeline = [
            e for e in list_timeline(c, incident_id=incident_id) if e["kind"] == "runbook_step"
        ]
    assert (book["run_count"], book["success_count"]) == (5, 4)
    assert runbooks.success_rate(dict(book)) == 0.8
    assert [tuple(r) for r in outbox] == [("runbook", incident_id)]
    assert len(timeline) == 10  # started + outcome for each step
    assert "Flush CDN cache': succeeded" in timeline[3]["message"]
    assert all(e["actor"] == "bob" for e in timeline)  # fmt: skip


def test_it_waits_for_a_second_person_on_saturday_unless_wedding_day_safe(
    engine: Engine, target: dict
) -> None:
    incident_id, rb = _setup(engine, target)
    safe = _run(engine, incident_id, rb, 1, SATURDAY)
    assert safe["status"] == "succeeded"
    waiting = _run(engine, incident_id, rb, 2, SATURDAY)
    assert waiting["status"] == "awaiting_approval" and len(target["paths"]) == 1
    with pytest.raises(runbooks.ExecutionRefused, match="second person"):
        runbooks.approve_execution(engine, execution_id=waiting["id"], actor="bob",
                                   role="responder", now=SATURDAY)  # fmt: skip
    with pytest.raises(service.PermissionDenied):
        runbooks.approve_execution(engine, execution_id=waiting["id"], actor="vera",
                                   role="viewer", now=SATURDAY)  # fmt: skip
    done = runbooks.approve_execution(engine, execution_id=waiting["id"], actor="carol",
                                      role="responder", now=SATURDAY)  # fmt: skip
    assert (done["status"], done["approved_by"]) == ("failed", "carol")
    with pytest.raises(runbooks.ExecutionRefused):
        runbooks.approve_execution(engine, execution_id=waiting["id"], actor="carol",
                                   role="responder", now=SATURDAY)  # fmt: skip
    with engine.connect() as c:
        msgs = [
            e["message"]
            for e in list_timeline(c, incident_id=incident_id)
            if e["kind"] == "runbook_step"
        ]
    assert any("awaiting approval (Saturday" in m for m in msgs)
    assert any("approved by carol" in m for m in msgs)  # fmt: skip


def test_it_needs_approval_every_day_when_the_runbook_says_so(engine: Engine, target: dict) -> None:
    incident_id, rb = _setup(engine, target, requires_approval=True)
    assert _run(engine, incident_id, rb, 0)["status"] == "awaiting_approval"
    assert target["paths"] == []


def test_it_lets_only_admins_write_and_responders_run(engine: Engine, target: dict) -> None:
    incident_id, rb = _setup(engine, target)
    with engine.begin() as c, pytest.raises(service.PermissionDenied):
        runbooks.create_runbook(c, body={"title": "x", "steps": [{"title": "a"}]}, actor="r",
                                role="responder", now=TUESDAY)  # fmt: skip
    with pytest.raises(service.PermissionDenied):
        runbooks.run_step(engine, incident_id=incident_id, runbook_id=rb["id"], step_index=0,
                          actor="v", role="viewer", now=TUESDAY, tz=LONDON)  # fmt: skip
    with pytest.raises(runbooks.ExecutionRefused, match="no step 9"):
        _run(engine, incident_id, rb, 9)
