"""Runbooks: procedures attached to services, alert rules or error groups, run from an incident.

Steps are `{"title", "kind", "config", "wedding_day_safe"}`:
- `manual`: a checklist item; running it records who ticked it off.
- `http`: a call to the URL configured in the runbook (`{url, method?, expected_status?,
  timeout_s?, follow_redirects?}`); never a URL typed at run time. The outbound policy applies
  (`monitoring_core.outbound`), redirects are not followed unless the step says so, and the
  timeline gets the status, size and SHA-256 of the answer, never its body (viewers read the
  timeline; the body may be anything the target chose to say).
- `notify`: a message through the notification outbox (`{channels, message}`).
- `health_check`: re-runs a health check now (`{check_id}`) through the health runner.

Approval: a step needs a second person's approval when its runbook `requires_approval`, or on
a Saturday (business time zone) unless the runbook is `wedding_day_approved` or the step is
`wedding_day_safe`. The approver must be a responder or admin other than the requester.
Every request, approval and outcome is a `runbook_executions` row and a timeline entry
(kind `runbook_step`); the runbook keeps `run_count`/`success_count` for its success rate.
Flows own their transactions: network calls never happen inside one.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, insert, or_, select, update

from monitoring_core import outbound
from monitoring_core.audit import actor_name, record_audit
from monitoring_core.enums import Role
from monitoring_core.incidents.queries import linked_alerts, linked_error_groups
from monitoring_core.incidents.service import IncidentInvalid, load_incident
from monitoring_core.incidents.store import add_timeline_entry
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message, inert
from monitoring_core.roles import require_role
from monitoring_core.schema import runbook_executions, runbooks
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "STEP_KINDS",
    "ExecutionRefused",
    "approval_reason",
    "approve_execution",
    "create_runbook",
    "list_executions",
    "list_runbooks",
    "run_step",
    "runbooks_for_incident",
    "success_rate",
    "update_runbook",
    "validate_steps",
]

STEP_KINDS = ("manual", "http", "notify", "health_check")
_METHODS = ("GET", "HEAD", "POST")
_OUTPUT_CHARS = 500
_MAX_READ_BYTES = 1_048_576  # hashed and counted, never stored


class ExecutionRefused(ValueError):
    """The step cannot run or be approved (state, person, configuration)."""


def _problem(problems: list[dict[str, str]], i: int, field: str, message: str) -> None:
    problems.append({"field": f"steps[{i}].{field}", "message": message})


def _check_config(
    kind: str, cfg: Mapping[str, Any], i: int, problems: list[dict[str, str]]
) -> None:
    if kind == "http":
        url = cfg.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            _problem(problems, i, "config.url", "an http(s) URL is required")
        elif reason := outbound.literal_refusal(urlsplit(url).hostname or ""):
            _problem(problems, i, "config.url", f"not an allowed target: {reason}")
        if str(cfg.get("method", "GET")).upper() not in _METHODS:
            _problem(problems, i, "config.method", f"one of {', '.join(_METHODS)}")
        timeout = cfg.get("timeout_s", 10)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 30
        ):
            _problem(problems, i, "config.timeout_s", "a number of seconds in (0, 30]")
    elif kind == "notify":
        channels = cfg.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, int) for c in channels)
        ):
            _problem(problems, i, "config.channels", "a non-empty list of channel ids")
        if not isinstance(cfg.get("message"), str) or not cfg["message"].strip():
            _problem(problems, i, "config.message", "is required")
    elif kind == "health_check" and not isinstance(cfg.get("check_id"), int):
        _problem(problems, i, "config.check_id", "a health check id is required")


def validate_steps(raw: Any) -> list[dict[str, Any]]:
    """Steps in their stored shape; IncidentInvalid lists every problem."""
    problems: list[dict[str, str]] = []
    if not isinstance(raw, list) or not raw:
        raise IncidentInvalid([{"field": "steps", "message": "a non-empty list of steps"}])
    steps = []
    for i, step in enumerate(raw):
        if not isinstance(step, Mapping):
            _problem(problems, i, "", "each step is an object")
            continue
        kind, cfg = step.get("kind", "manual"), step.get("config") or {}
        if not isinstance(step.get("title"), str) or not step["title"].strip():
            _problem(problems, i, "title", "is required")
        if kind not in STEP_KINDS:
            _problem(problems, i, "kind", f"one of {', '.join(STEP_KINDS)}")
        elif not isinstance(cfg, Mapping):
            _problem(problems, i, "config", "must be an object")
        else:
            _check_config(kind, cfg, i, problems)
        steps.append(
            {
                "title": str(step.get("title", "")).strip(),
                "kind": kind,
                "config": dict(cfg) if isinstance(cfg, Mapping) else {},
                "wedding_day_safe": bool(step.get("wedding_day_safe", False)),
            }
        )
    if problems:
        raise IncidentInvalid(problems)
    return steps


def _runbook_values(body: Mapping[str, Any]) -> dict[str, Any]:
    """Column values of a runbook body; IncidentInvalid lists every problem."""
    problems = (
        [{"field": "title", "message": "is required"}]
        if not isinstance(body.get("title"), str) or not body["title"].strip()
        else []
    )
    for field, kind in (("service_name", str), ("alert_rule_id", int), ("error_group_id", int)):
        value = body.get(field)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            problems.append(
                {"field": field, "message": f"must be {'a string' if kind is str else 'an id'}"}
            )
    if problems:
        raise IncidentInvalid(problems)
    return {
        "title": body["title"].strip(),
        "description": str(body.get("description") or ""),
        "steps": validate_steps(body.get("steps")),
        "requires_approval": bool(body.get("requires_approval", False)),
        "wedding_day_approved": bool(body.get("wedding_day_approved", False)),
        **{k: body.get(k) for k in ("service_name", "alert_rule_id", "error_group_id")},
    }


def create_runbook(
    conn: Connection, *, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Admins write runbooks (their HTTP targets are trusted configuration)."""
    require_role(role, Role.ADMIN)
    values = {**_runbook_values(body), "created_at": now}
    row = conn.execute(insert(runbooks).values(**values).returning(*runbooks.c)).one()
    record_audit(conn, actor=actor, action="runbook.create", target=f"runbook:{row.id}", now=now)
    return dict(row._mapping)


def update_runbook(
    conn: Connection,
    *,
    runbook_id: int,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Replace a runbook's title, description, links, approval flags and steps (admins);
    LookupError when there is no such runbook. Its run counts are kept."""
    require_role(role, Role.ADMIN)
    values = _runbook_values(body)
    stmt = update(runbooks).where(runbooks.c.id == runbook_id).values(**values)
    row = conn.execute(stmt.returning(*runbooks.c)).first()
    if row is None:
        raise LookupError(f"runbook {runbook_id}")
    record_audit(
        conn,
        actor=actor,
        action="runbook.update",
        target=f"runbook:{runbook_id}",
        details={"steps": len(values["steps"])},
        now=now,
    )
    return dict(row._mapping)


def list_runbooks(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(runbooks).order_by(runbooks.c.id))]


def runbooks_for_incident(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    """Runbooks of the incident's services, its alerts' rules and its error groups."""
    incident = load_incident(conn, incident_id=incident_id)
    alerts = linked_alerts(conn, incident_id=incident_id)
    rule_ids = [a["alert_configuration_id"] for a in alerts]
    attached = [a["runbook_id"] for a in alerts if a["runbook_id"] is not None]
    groups = [g["id"] for g in linked_error_groups(conn, incident_id=incident_id)]
    rows = conn.execute(
        select(runbooks)
        .where(
            or_(
                runbooks.c.service_name.in_(list(incident["affected_services"] or [])),
                runbooks.c.alert_rule_id.in_(rule_ids),
                runbooks.c.id.in_(attached),
                runbooks.c.error_group_id.in_(groups),
            )
        )
        .order_by(runbooks.c.id)
    )
    return [dict(r._mapping) for r in rows]


def approval_reason(
    runbook: Mapping[str, Any], step: Mapping[str, Any], *, is_saturday: bool
) -> str | None:
    """Why this step needs a second person's approval, or None when it may run at once."""
    if runbook["requires_approval"]:
        return "the runbook requires approval"
    if is_saturday and not (runbook["wedding_day_approved"] or step.get("wedding_day_safe")):
        return "Saturday: the step is not wedding-day approved"
    return None


def success_rate(runbook: Mapping[str, Any]) -> float | None:
    """Succeeded runs / finished runs, None before the first run."""
    runs = int(runbook["run_count"])
    return int(runbook["success_count"]) / runs if runs else None


def list_executions(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(runbook_executions)
        .where(runbook_executions.c.incident_id == incident_id)
        .order_by(runbook_executions.c.id)
    )
    return [dict(r._mapping) for r in rows]


def _timeline(
    conn: Connection,
    ex: Mapping[str, Any],
    step: Mapping[str, Any],
    text: str,
    actor: str,
    now: datetime,
) -> None:
    add_timeline_entry(
        conn,
        incident_id=ex["incident_id"],
        kind="runbook_step",
        actor=actor,
        now=now,
        message=f"Runbook step '{step['title']}': {text}",
        details={
            "execution_id": ex["id"],
            "runbook_id": ex["runbook_id"],
            "step_index": ex["step_index"],
            "status": ex["status"],
        },
    )


def _load(conn: Connection, runbook_id: int, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    row = conn.execute(select(runbooks).where(runbooks.c.id == runbook_id)).first()
    if row is None:
        raise ExecutionRefused(f"runbook {runbook_id} does not exist")
    steps = row._mapping["steps"] or []
    if not 0 <= index < len(steps):
        raise ExecutionRefused(f"runbook {runbook_id} has no step {index}")
    return dict(row._mapping), dict(steps[index])


def run_step(
    engine: Engine,
    *,
    incident_id: int,
    runbook_id: int,
    step_index: int,
    actor: str,
    role: str,
    now: datetime,
    tz: ZoneInfo,
) -> dict[str, Any]:
    """Request a step: it runs at once, or waits for approval; the execution row."""
    require_role(role, Role.RESPONDER)
    with engine.begin() as conn:
        load_incident(conn, incident_id=incident_id)
        runbook, step = _load(conn, runbook_id, step_index)
        reason = approval_reason(runbook, step, is_saturday=is_wedding_day(now, tz))
        ex = dict(
            conn.execute(
                insert(runbook_executions)
                .values(
                    runbook_id=runbook_id,
                    incident_id=incident_id,
                    step_index=step_index,
                    status="awaiting_approval" if reason else "running",
                    requested_by=actor,
                    created_at=now,
                )
                .returning(*runbook_executions.c)
            )
            .one()
            ._mapping
        )
        text = (
            f"requested by {actor_name(actor)}, awaiting approval ({reason})"
            if reason
            else f"started by {actor_name(actor)}"
        )
        _timeline(conn, ex, step, text, actor, now)
    return ex if reason else _execute(engine, ex, step, actor, now)


def approve_execution(
    engine: Engine, *, execution_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """A second person approves a waiting step, which then runs."""
    require_role(role, Role.RESPONDER)
    with engine.begin() as conn:
        row = conn.execute(
            select(runbook_executions)
            .where(runbook_executions.c.id == execution_id)
            .with_for_update()
        ).first()
        if row is None or row.status != "awaiting_approval":
            raise ExecutionRefused("only a step awaiting approval can be approved")
        if row.requested_by == actor:
            raise ExecutionRefused("approval needs a second person, not the requester")
        ex = dict(
            conn.execute(
                update(runbook_executions)
                .where(runbook_executions.c.id == execution_id)
                .values(status="running", approved_by=actor)
                .returning(*runbook_executions.c)
            )
            .one()
            ._mapping
        )
        _, step = _load(conn, ex["runbook_id"], ex["step_index"])
        _timeline(conn, ex, step, f"approved by {actor_name(actor)}", actor, now)
    return _execute(engine, ex, step, actor, now)


def _http(cfg: Mapping[str, Any]) -> tuple[bool, str]:
    method = str(cfg.get("method", "GET")).upper()
    request = urllib.request.Request(
        str(cfg["url"]), method=method, headers={"User-Agent": "wedding-monitoring-runbook"}
    )
    expected = cfg.get("expected_status")
    started = time.perf_counter()
    try:
        with outbound.open_url(
            request,
            timeout=float(cfg.get("timeout_s", 10)),
            policy=outbound.current_policy(),
            follow_redirects=bool(cfg.get("follow_redirects", False)),
        ) as reply:
            status, raw = reply.status, reply.read(_MAX_READ_BYTES + 1)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(_MAX_READ_BYTES + 1)
        exc.close()
    except outbound.TargetRefused as exc:
        return False, f"{method} {cfg['url']} refused: {exc}"[:_OUTPUT_CHARS]
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{method} {cfg['url']} failed: {exc}"[:_OUTPUT_CHARS]
    ms = (time.perf_counter() - started) * 1000
    ok = status == expected if isinstance(expected, int) else 200 <= status < 300
    return ok, f"{method} {cfg['url']} -> {status} in {ms:.0f} ms, {_digest(raw)}"[:_OUTPUT_CHARS]


def _digest(raw: bytes) -> str:
    """Size and hash of an answer: enough to tell answers apart without showing one."""
    if len(raw) > _MAX_READ_BYTES:
        return f"over {_MAX_READ_BYTES} bytes"
    return f"{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}"


def _perform(
    engine: Engine, ex: Mapping[str, Any], step: Mapping[str, Any], actor: str, now: datetime
) -> tuple[bool, str]:
    cfg = step.get("config") or {}
    if step["kind"] == "manual":
        return True, f"checked off by {actor_name(actor)}"
    if step["kind"] == "http":
        return _http(cfg)
    if step["kind"] == "health_check":
        from monitoring_core.health.runner import run_check_now

        run = run_check_now(engine, int(cfg["check_id"]), now)
        if run is None:
            return False, f"health check {cfg['check_id']} does not exist"
        return run.outcome.success, f"{run.check.check_name}: {run.outcome.message}"
    with engine.begin() as conn:  # notify
        text = "\n".join(inert(line) for line in str(cfg["message"]).splitlines())
        message = Message(f"[RUNBOOK] {inert(step['title'])}", text, "info")
        rows = outbox_rows(
            channel_ids=cfg["channels"],
            message=message,
            kind="runbook",
            idempotency_key=f"runbook-execution:{ex['id']}",
            now=now,
            incident_id=ex["incident_id"],
        )
        ids = enqueue(conn, rows)
    return True, f"{len(ids)} notification(s) queued"


def _execute(
    engine: Engine, ex: Mapping[str, Any], step: Mapping[str, Any], actor: str, now: datetime
) -> dict[str, Any]:
    try:
        ok, output = _perform(engine, ex, step, actor, now)
    except Exception as exc:  # noqa: BLE001 - a failing step is an outcome to record, not a crash
        ok, output = False, f"{type(exc).__name__}: {exc}"
    with engine.begin() as conn:
        done = dict(
            conn.execute(
                update(runbook_executions)
                .where(runbook_executions.c.id == ex["id"])
                .values(status="succeeded" if ok else "failed", finished_at=now, output=output)
                .returning(*runbook_executions.c)
            )
            .one()
            ._mapping
        )
        conn.execute(
            update(runbooks)
            .where(runbooks.c.id == ex["runbook_id"])
            .values(
                run_count=runbooks.c.run_count + 1,
                success_count=runbooks.c.success_count + (1 if ok else 0),
            )
        )
        _timeline(conn, done, step, f"{done['status']}: {output}", actor, now)
    return done
