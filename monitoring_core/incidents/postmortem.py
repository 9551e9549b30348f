"""Post-incident reports: a Markdown draft built only from what the system recorded, saved in
`incidents.postmortem_markdown`, plus action items tracked in `incident_action_items`.

Metric snapshots: for each metric of the incident's alert rules, avg and max in the hour
before detection, during the incident (detection to resolution, or now) and the hour after
resolution (as far as it has happened), read through `metrics_query.query_metric`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from monitoring_core.audit import actor_name
from monitoring_core.enums import Role
from monitoring_core.incidents.queries import linked_alerts, linked_error_groups
from monitoring_core.incidents.service import IncidentInvalid, load_incident
from monitoring_core.incidents.store import add_timeline_entry, list_timeline
from monitoring_core.metrics_query import query_metric
from monitoring_core.roles import require_role
from monitoring_core.schema import incident_action_items, incidents
from monitoring_core.timerange import TimeRange

__all__ = [
    "SNAPSHOT_MARGIN",
    "add_action_item",
    "build_postmortem",
    "generate_postmortem",
    "list_action_items",
    "metric_snapshots",
    "save_postmortem",
    "set_action_item_done",
]

SNAPSHOT_MARGIN = timedelta(hours=1)
_FILL_IN = "_To be filled in._"


def _windows(incident: Mapping[str, Any], now: datetime) -> list[tuple[str, TimeRange]]:
    detected, resolved = incident["detected_at"], incident["resolved_at"]
    windows = [("before", TimeRange(detected - SNAPSHOT_MARGIN, detected))]
    end = resolved or now
    if end > detected:
        windows.append(("during", TimeRange(detected, end)))
    after_end = min(resolved + SNAPSHOT_MARGIN, now) if resolved else None
    if resolved and after_end and after_end > resolved:
        windows.append(("after", TimeRange(resolved, after_end)))
    return windows


def _window_figure(
    conn: Connection, metric: str, aggregation: str, span: TimeRange
) -> float | None:
    minutes = max(1, math.ceil(span.duration.total_seconds() / 60))
    frame = query_metric(
        conn,
        metric_name=metric,
        aggregation=aggregation,
        interval=timedelta(minutes=minutes),
        tr=span,
    )
    values = [float(v) for v in frame["value"] if v is not None and not math.isnan(float(v))]
    if not values:
        return None
    return max(values) if aggregation == "max" else sum(values) / len(values)


def metric_snapshots(
    conn: Connection, *, incident: Mapping[str, Any], metrics: list[str], now: datetime
) -> list[dict[str, Any]]:
    """Rows `{metric, window, start, end, avg, max}` for each metric and window."""
    rows = []
    for metric in metrics:
        for name, span in _windows(incident, now):
            rows.append(
                {
                    "metric": metric,
                    "window": name,
                    "start": span.start,
                    "end": span.end,
                    "avg": _window_figure(conn, metric, "avg", span),
                    "max": _window_figure(conn, metric, "max", span),
                }
            )
    return rows


def _t(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _n(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def _minutes(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds() / 60:.1f} min" if start and end else "—"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def list_action_items(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    query = select(incident_action_items).where(incident_action_items.c.incident_id == incident_id)
    return [dict(r._mapping) for r in conn.execute(query.order_by(incident_action_items.c.id))]


def build_postmortem(conn: Connection, *, incident_id: int, now: datetime) -> str:
    """The Markdown draft of an incident's post-incident report (nothing invented)."""
    inc = load_incident(conn, incident_id=incident_id)
    alerts = linked_alerts(conn, incident_id=incident_id)
    groups = linked_error_groups(conn, incident_id=incident_id)
    metrics = sorted({a["metric_name"] for a in alerts if a["metric_name"]})
    lines = [
        f"# Post-incident report: {inc['incident_number']} — {inc['title']}",
        "",
        "## Summary",
        "",
        f"- Severity: **{inc['severity']}**, status **{inc['status']}**",
        f"- Detected: {_t(inc['detected_at'])}; acknowledged: {_t(inc['acknowledged_at'])} "
        f"(time to acknowledge {_minutes(inc['detected_at'], inc['acknowledged_at'])})",
        f"- Mitigated: {_t(inc['mitigated_at'])}; resolved: {_t(inc['resolved_at'])} "
        f"(time to resolve {_minutes(inc['detected_at'], inc['resolved_at'])})",
        f"- Assigned to: {inc['assigned_to'] or '—'}; declared by: {inc['created_by'] or '—'}",
        "",
        inc["description"] or "",
        "",
        f"**Resolution:** {inc['resolution_summary'] or _FILL_IN}",
        "",
        f"**Root cause:** {inc['root_cause'] or _FILL_IN}",
        "",
        "## Impact",
        "",
        f"- Affected services: {', '.join(inc['affected_services'] or []) or '—'}",
        f"- Users affected (estimate): {inc['affected_users_count'] if inc['affected_users_count'] is not None else 'unknown'}",
        f"- Wedding impact: **{inc['wedding_impact']}**"
        + (" (on a Saturday — a wedding day)" if inc["is_saturday"] else ""),
        "",
        "## Timeline",
        "",
        "| time (UTC) | event | by | entry |",
        "|---|---|---|---|",
    ]
    for e in list_timeline(conn, incident_id=incident_id):
        lines.append(
            f"| {_t(e['time'])} | {e['kind']} | {_cell(e['actor'] or '')} | {_cell(e['message'])} |"
        )
    lines += ["", "## Linked alerts", ""]
    lines += [
        f"- {a['alert_name']}{' [' + a['alert_key'] + ']' if a['alert_key'] else ''} "
        f"({a['severity_level']}, {a['status']}): first triggered {_t(a['first_triggered_at'])}, "
        f"value {_n(a['trigger_value'])}"
        for a in alerts
    ] or ["- none"]
    lines += ["", "## Error groups", ""]
    lines += [
        f"- {g['error_type']}: {_cell(g['message_template'])} — {g['event_count']} events, "
        f"{g['user_count']} users, {g['status']}"
        for g in groups
    ] or ["- none"]
    lines += ["", "## Metric snapshots", ""]
    snaps = metric_snapshots(conn, incident=inc, metrics=metrics, now=now)
    if snaps:
        lines += ["| metric | window | from | to | avg | max |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {s['metric']} | {s['window']} | {_t(s['start'])} | {_t(s['end'])} | "
            f"{_n(s['avg'])} | {_n(s['max'])} |"
            for s in snaps
        ]
    else:
        lines.append("- no alert metrics linked")
    lines += ["", "## Contributing factors", "", _FILL_IN, "", "## Action items", ""]
    items = list_action_items(conn, incident_id=incident_id)
    lines += [
        f"- [{'x' if i['is_done'] else ' '}] {i['title']} (owner: {i['owner'] or '—'}"
        f"{', due ' + i['due_at'].date().isoformat() if i['due_at'] else ''})"
        for i in items
    ]
    if not items:
        lines.append(_FILL_IN)
    lines += ["", f"_Drafted from the recorded facts at {_t(now)}._", ""]
    return "\n".join(lines)


def save_postmortem(
    conn: Connection, *, incident_id: int, markdown: str, actor: str, role: str, now: datetime
) -> None:
    """Store the (edited) report and note it on the timeline."""
    require_role(role, Role.RESPONDER)
    if not markdown.strip():
        raise IncidentInvalid([{"field": "postmortem_markdown", "message": "must not be empty"}])
    load_incident(conn, incident_id=incident_id, lock=True)
    conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(postmortem_markdown=markdown, updated_at=now)
    )
    add_timeline_entry(
        conn,
        incident_id=incident_id,
        kind="postmortem",
        actor=actor,
        now=now,
        message=f"Post-incident report saved by {actor_name(actor)} ({len(markdown)} characters)",
    )


def generate_postmortem(
    conn: Connection, *, incident_id: int, actor: str, role: str, now: datetime
) -> str:
    """Build the draft from the recorded facts and store it; the Markdown."""
    markdown = build_postmortem(conn, incident_id=incident_id, now=now)
    save_postmortem(
        conn, incident_id=incident_id, markdown=markdown, actor=actor, role=role, now=now
    )
    return markdown


def add_action_item(
    conn: Connection,
    *,
    incident_id: int,
    title: str,
    actor: str,
    role: str,
    now: datetime,
    owner: str | None = None,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    """Track a follow-up; the row."""
    require_role(role, Role.RESPONDER)
    if not title.strip():
        raise IncidentInvalid([{"field": "title", "message": "must not be empty"}])
    load_incident(conn, incident_id=incident_id)
    row = conn.execute(
        insert(incident_action_items)
        .values(
            incident_id=incident_id,
            title=title.strip(),
            owner=(owner or "").strip() or None,
            due_at=due_at,
            created_at=now,
        )
        .returning(*incident_action_items.c)
    ).one()
    add_timeline_entry(
        conn,
        incident_id=incident_id,
        kind="action_item",
        actor=actor,
        now=now,
        message=f"Action item added: {title.strip()}",
    )
    return dict(row._mapping)


def set_action_item_done(
    conn: Connection, *, item_id: int, done: bool, actor: str, role: str, now: datetime
) -> None:
    require_role(role, Role.RESPONDER)
    row = conn.execute(
        update(incident_action_items)
        .where(incident_action_items.c.id == item_id)
        .values(is_done=done)
        .returning(incident_action_items.c.incident_id, incident_action_items.c.title)
    ).first()
    if row is None:
        raise IncidentInvalid([{"field": "item_id", "message": f"no action item {item_id}"}])
    add_timeline_entry(
        conn,
        incident_id=row.incident_id,
        kind="action_item",
        actor=actor,
        now=now,
        message=f"Action item {'done' if done else 'reopened'}: {row.title}",
    )
