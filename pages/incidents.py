"""Incidents: active first (severity, age against target, assignee), the detail with its
timeline, alerts and errors, responder actions and runbooks, the post-incident editor, MTTA/MTTR."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import IncidentStatus, Role, WeddingImpact
from monitoring_core.incidents import postmortem, response_figures, runbooks, service
from monitoring_core.incidents.escalation import escalate_incident_by_hand
from monitoring_core.incidents.lifecycle import TRANSITIONS
from monitoring_core.incidents.queries import active_incidents, incident_detail, list_incidents
from ui import actions as ui_actions
from ui import auth, data, fmt, url_state, widgets

user = auth.require_role(Role.VIEWER, organisations=True)
settings = data.get_settings()
now, tr, tz = widgets.current_now(), widgets.current_time_range(), data.business_tz()
# A user limited to organisations sees the incidents linked to their organisations' error groups
# (row-level security, monitoring_core.org_scope) read-only, whatever their role: actions run
# as the owner role, outside their scope.
limited = user.organization_ids is not None
responder = auth.has_role(Role.RESPONDER) and not limited
FLASH = "incidents_flash"
TABS = ["Active", "Detail", "MTTA / MTTR"]
SECTIONS = ["Timeline", "Alerts & errors", "Runbooks", "Post-incident report"]
STATUS_WORDS = {
    "open": "Open",
    "investigating": "Investigating",
    "mitigating": "Mitigating",
    "resolved": "Resolved",
    "closed": "Closed",
}


def _stay(incident_id: int | None) -> None:
    """Pin the incident in the URL before an action's rerun, so the same incident (and, through
    the widgets' own state, the same tab and section) is shown after it, whatever the lists'
    order becomes."""
    if incident_id is not None:
        url_state.put("incident", str(incident_id))
        url_state.put("tab", "Detail")


def act(label: str, action: Callable[..., Any], **kwargs: Any) -> None:
    """Run an action as the signed-in user in one transaction, then reload fresh data."""
    _stay(kwargs.get("incident_id"))
    ui_actions.run(
        FLASH,
        lambda conn: action(
            conn, actor=user_actor(user.username), role=user.role.value, now=clock.now(), **kwargs
        ),
        done=f"{label} done",
        failed=f"{label} failed: ",
        refused=(service.PermissionDenied, ValueError, LookupError),
    )


def run_runbook(label: str, flow: Callable[..., dict[str, Any]], **kwargs: Any) -> None:
    """Runbook flows own their transactions (HTTP calls never run inside one)."""
    _stay(kwargs.get("incident_id"))
    ui_actions.run_flow(
        FLASH,
        lambda engine: flow(
            engine, actor=user_actor(user.username), role=user.role.value, now=clock.now(), **kwargs
        ),
        done=lambda ex: f"{label}: {ex['status']} {ex.get('output') or ''}",
        failed=f"{label} failed: ",
        refused=(service.PermissionDenied, ValueError, LookupError),
    )


def _age(inc: dict[str, Any]) -> str:
    r = inc["response"]
    left = r["minutes_left"]
    state = f"{fmt.duration(abs(left) * 60)} {'over' if left < 0 else 'left'}"
    return f"{r['target']} target {fmt.duration(r['target_minutes'] * 60)}: {':red[' + state + ']' if left < 0 else state}"


def _status(value: str) -> str:
    return STATUS_WORDS.get(value, fmt.label(value))


def _active(items: list[dict[str, Any]]) -> None:
    if not items:
        st.success("No open incidents.", icon=":material/check_circle:")
    for inc in items:
        with st.container(border=True):
            st.markdown(
                f"{widgets.severity_badge(inc['severity'])} **{inc['incident_number']}** "
                f"{fmt.md_escape(inc['title'])} — {_status(inc['status'])} · {_age(inc)} · "
                f"assignee: {fmt.md_escape(inc['assigned_to'] or 'nobody')} · "
                f"wedding impact: {fmt.md_escape(fmt.label(inc['wedding_impact']))}"
            )
            st.page_link(  # the same page with this incident open: a link to share
                "pages/incidents.py",
                label=f"Open {inc['incident_number']}",
                icon=":material/open_in_new:",
                query_params={"incident": str(inc["id"]), "tab": "Detail"},
            )


def _recent(items: list[dict[str, Any]]) -> None:
    """The incidents of a limited user's organisations of late, resolved ones too (they have
    no other list of what affected them)."""
    st.subheader("Recent incidents")
    columns = ["Incident", "Title", "Severity", "Status", "Detected", "Resolved"]
    rows = [
        {
            "Incident": i["incident_number"],
            "Title": i["title"],
            "Severity": i["severity"],
            "Status": _status(i["status"]),
            "Detected": fmt.when(i["detected_at"], tz, now),
            "Resolved": fmt.when(i["resolved_at"], tz, now),
        }
        for i in items
    ]
    st.dataframe(pd.DataFrame(rows, columns=columns), hide_index=True)
    st.caption("Open one in the Detail tab: the error groups of yours it is linked to.")


def _actions(inc: dict[str, Any]) -> None:
    iid = inc["id"]
    a, b, c = st.columns(3)
    if a.button("Acknowledge", key="inc_ack", disabled=inc["acknowledged_at"] is not None):
        act("Acknowledge", service.acknowledge_incident, incident_id=iid)
    if inc["status"] in ("open", "investigating", "mitigating") and a.button(
        "Escalate now", key="inc_escalate", help="Page the next step of the escalation policy"
    ):
        act(
            "Escalate",
            escalate_incident_by_hand,
            incident_id=iid,
            tz=tz,
            public_url=settings.public_url,
        )
    who = b.text_input(
        "Assign to",
        inc["assigned_to"] or user.username,
        key=f"inc_assignee_{iid}_{inc['assigned_to']}",  # a new assignee shows at once
    )
    if b.button("Assign", key="inc_assign"):
        act("Assign", service.assign_incident, incident_id=iid, assignee=who)
    moves = sorted(s.value for s in TRANSITIONS[IncidentStatus(inc["status"])] if s != "resolved")
    # Keyed by the status: the choices change with it, and a kept choice would lag one step.
    to = (
        c.selectbox("Move to", moves, format_func=_status, key=f"inc_to_{inc['status']}")
        if moves
        else None
    )
    if to and c.button("Change status", key="inc_status"):
        act("Status", service.change_status, incident_id=iid, status=to)
    note = st.text_area("Timeline note", key="inc_note_text")
    public = st.checkbox("Public (status page)", key="inc_note_public")
    if st.button("Add note", key="inc_note"):
        act("Note", service.add_note, incident_id=iid, message=note, is_public=public)
    if inc["status"] in ("open", "investigating", "mitigating"):
        summary = st.text_input("Resolution summary", key="inc_summary")
        cause = st.text_input("Root cause (optional)", key="inc_cause")
        if st.button("Resolve", key="inc_resolve"):
            act(
                "Resolve",
                service.resolve_incident,
                incident_id=iid,
                resolution_summary=summary,
                root_cause=cause or None,
            )


def _edit(inc: dict[str, Any]) -> None:
    with st.expander("Severity, impact, users, tags"):
        sevs, impacts = ["SEV1", "SEV2", "SEV3", "SEV4"], [w.value for w in WeddingImpact]
        left, right = st.columns(2)
        sev = left.selectbox("Severity", sevs, index=sevs.index(inc["severity"]), key="ed_sev")
        impact = right.selectbox(
            "Wedding impact", impacts, index=impacts.index(inc["wedding_impact"]), key="ed_impact"
        )
        users = left.number_input(
            "Users affected (estimate)", 0, value=inc["affected_users_count"] or 0, key="ed_users"
        )
        tags = right.text_input("Tags (comma separated)", ", ".join(inc["tags"]), key="ed_tags")
        if st.button("Save changes", key="ed_save"):
            body = {
                "severity": sev,
                "wedding_impact": impact,
                "affected_users_count": int(users),
                "tags": [t.strip() for t in tags.split(",") if t.strip()],
            }
            act("Update", service.update_incident, incident_id=inc["id"], body=body)


def _runbooks(iid: int) -> None:
    books = data.read_or_stop(runbooks.runbooks_for_incident, incident_id=iid)
    execs = data.read_or_stop(runbooks.list_executions, incident_id=iid)
    if not books:
        st.caption("No runbook is attached to these services, rules or error groups.")
    for book in books:
        rate = runbooks.success_rate(book)
        st.markdown(
            f"**{fmt.md_escape(book['title'])}** · success rate {'—' if rate is None else f'{rate:.0%}'}"
            f"{' · needs approval' if book['requires_approval'] else ''}"
            f"{' · wedding-day approved' if book['wedding_day_approved'] else ''}"
        )
        for i, step in enumerate(book["steps"]):
            left, right = st.columns([5, 1])
            left.markdown(
                f"{i + 1}. {fmt.md_escape(step['title'])} ({fmt.md_code(step['kind'])}"
                f"{', wedding-day safe' if step.get('wedding_day_safe') else ''})"
            )
            if responder and ui_actions.confirmed(
                "Run",
                f"Run step {i + 1}, **{fmt.md_escape(step['title'])}**, of "
                f"{fmt.md_escape(book['title'])} now? It is recorded on the incident's timeline.",
                key=f"rb_run_{book['id']}_{i}",
                confirm="Run step",
                where=right,
            ):
                run_runbook(
                    "Runbook step",
                    runbooks.run_step,
                    incident_id=iid,
                    runbook_id=book["id"],
                    step_index=i,
                    tz=tz,
                )
    titles = {book["id"]: book["title"] for book in books}
    for ex in (e for e in execs if e["status"] == "awaiting_approval"):
        st.warning(
            f"Step {ex['step_index'] + 1} of {fmt.md_escape(titles.get(ex['runbook_id'], ex['runbook_id']))} "
            f"awaits approval (requested by {fmt.md_escape(fmt.actor(ex['requested_by']))})"
        )
        if responder and ui_actions.confirmed(
            "Approve and run",
            f"Approve step {ex['step_index'] + 1} and run it now?",
            key=f"rb_approve_{ex['id']}",
        ):
            _stay(iid)
            run_runbook("Approval", runbooks.approve_execution, execution_id=ex["id"])
    if execs:
        rows = [
            {
                "Runbook": titles.get(ex["runbook_id"], f"#{ex['runbook_id']}"),
                "Step": ex["step_index"] + 1,
                "Status": fmt.label(ex["status"]),
                "Requested by": fmt.actor(ex["requested_by"]),
                "Approved by": fmt.actor(ex["approved_by"]),
                "Started": fmt.when(ex["created_at"], tz, now),
                "Finished": fmt.when(ex["finished_at"], tz, now),
                "Output": ex["output"] or "",
            }
            for ex in execs
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def _postmortem(inc: dict[str, Any]) -> None:
    iid, text = inc["id"], inc["postmortem_markdown"] or ""
    if responder and st.button("Draft from recorded facts", key="pm_draft"):
        act("Draft report", postmortem.generate_postmortem, incident_id=iid)
    if responder:
        edited = st.text_area(
            "Report (Markdown)", text, height=400, key=f"pm_text_{iid}_{len(text)}"
        )
        if st.button("Save report", key="pm_save"):
            act("Save report", postmortem.save_postmortem, incident_id=iid, markdown=edited)
    elif text:
        st.markdown(text)
    if text:
        st.download_button(
            "Download Markdown",
            text,
            file_name=f"{inc['incident_number']}.md",
            mime="text/markdown",
            key="pm_download",
        )
    items = data.read_or_stop(postmortem.list_action_items, incident_id=iid)
    for item in items:
        done = st.checkbox(
            f"{fmt.md_escape(item['title'])} ({fmt.md_escape(item['owner'] or 'no owner')})",
            item["is_done"],
            key=f"ai_{item['id']}",
            disabled=not responder,
        )
        if done != item["is_done"]:
            act("Action item", postmortem.set_action_item_done, item_id=item["id"], done=done)
    if responder:
        left, right = st.columns(2)
        title = left.text_input("New action item", key="ai_title")
        owner = right.text_input("Owner", key="ai_owner")
        if st.button("Add action item", key="ai_add"):
            act(
                "Action item", postmortem.add_action_item, incident_id=iid, title=title, owner=owner
            )


def _timeline_rows(inc: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {
            "Time": fmt.when(e["time"], tz, now),
            "What": fmt.label(e["kind"]),
            "Who": fmt.actor(e["actor"]),
            "Message": e["message"] or "",
            "Public": bool(e["is_public"]),
        }
        for e in reversed(inc["timeline"])  # newest first: the action just taken is on top
    ]
    return pd.DataFrame(rows, columns=["Time", "What", "Who", "Message", "Public"])


def _links(inc: dict[str, Any]) -> None:
    _alerts(inc)
    _error_groups(inc)


def _alerts(inc: dict[str, Any]) -> None:
    st.markdown("**Alerts**")
    if not inc["alerts"]:
        st.caption("No alert is linked to this incident.")
    for alert in inc["alerts"]:
        key = f" · {fmt.md_escape(alert['alert_key'])}" if alert["alert_key"] else ""
        st.page_link(
            "pages/alert.py",
            label=(
                f"#{alert['id']} {alert['alert_name']}{key} — {_status(alert['status'])}, "
                f"since {fmt.when(alert['first_triggered_at'], tz, now)}, "
                f"value {fmt.number(alert['trigger_value'])}"
            ),
            icon=":material/notification_important:",
            query_params={"instance": str(alert["id"])},
        )


def _error_groups(inc: dict[str, Any]) -> None:
    st.markdown("**Error groups**")
    if not inc["error_groups"]:
        st.caption("No error group is linked to this incident.")
        return
    rows = [
        {
            "Error": f"{g['error_type']}: {g['message_template']}",
            "Status": fmt.label(g["status"]),
            "Events": g["event_count"],
            "Users": g["user_count"],
            "Services": ", ".join(g["services"]) or "—",
            "First seen": fmt.when(g["first_seen"], tz, now),
            "Last seen": fmt.when(g["last_seen"], tz, now),
        }
        for g in inc["error_groups"]
    ]
    frame = pd.DataFrame(rows)
    if limited:  # a group's totals count every organisation's events and users
        frame = frame.drop(columns=["Events", "Users"])
    st.dataframe(frame, hide_index=True)


def _detail(iid: int) -> None:
    inc = data.read_or_stop(incident_detail, incident_id=iid, now=now, error_groups_only=limited)
    if inc is None:
        st.error("That incident does not exist.")
        return
    st.subheader(f"{inc['incident_number']}: {fmt.md_escape(inc['title'])}")
    st.markdown(
        f"{widgets.severity_badge(inc['severity'])} **{_status(inc['status'])}** · {_age(inc)} · "
        f"services: {fmt.md_escape(', '.join(inc['affected_services']) or '—')} · "
        f"users affected: {fmt.count(inc['affected_users_count']) if inc['affected_users_count'] else 'unknown'} · "
        f"wedding impact: **{fmt.md_escape(fmt.label(inc['wedding_impact']))}**"
        f"{' · Saturday' if inc['is_saturday'] else ''} · "
        f"assignee: {fmt.md_escape(inc['assigned_to'] or 'nobody')}"
    )
    if limited:  # the timeline, alerts, runbooks and report are the responders' own
        _error_groups(inc)
        return
    section = url_state.tabs(SECTIONS, param="section", label="Section")
    if section == "Timeline":
        if responder and inc["status"] != "closed":
            _actions(inc)
            _edit(inc)
        frame = _timeline_rows(inc)
        st.dataframe(
            frame,
            hide_index=True,
            height=widgets.table_height(len(frame)),
            column_config={"Message": st.column_config.TextColumn(width="large")},
        )
    elif section == "Alerts & errors":
        _links(inc)
    elif section == "Runbooks":
        _runbooks(iid)
    else:
        _postmortem(inc)


def _declare() -> None:
    with st.expander("Declare an incident"):
        title = st.text_input("Title", key="new_title")
        severity = st.selectbox(
            "Severity", ["SEV1", "SEV2", "SEV3", "SEV4"], index=1, key="new_sev"
        )
        services = st.text_input("Affected services (comma separated)", key="new_services")
        impact = st.selectbox("Wedding impact", [w.value for w in WeddingImpact], key="new_impact")
        if st.button("Declare", key="new_declare"):
            body = {
                "title": title,
                "severity": severity,
                "wedding_impact": impact,
                "affected_services": [s.strip() for s in services.split(",") if s.strip()],
            }
            ui_actions.run(
                FLASH,
                lambda conn: service.create_incident(
                    conn,
                    body=body,
                    tz=tz,
                    actor=user_actor(user.username),
                    role=user.role.value,
                    now=clock.now(),
                ),
                done=_declared,
                failed="Declare failed: ",
                refused=(service.PermissionDenied, ValueError, LookupError),
            )


def _declared(inc: dict[str, Any]) -> str:
    _stay(int(inc["id"]))  # the new incident opens
    return f"Declared {inc['incident_number']}"


def _minutes(value: float | None) -> str:
    return "—" if value is None else fmt.duration(value * 60)


def _report() -> None:
    rep = data.read_or_stop(response_figures.incident_report, start=tr.start, end=tr.end, tz=tz)
    totals = rep["totals"]
    cols = st.columns(4)
    cols[0].metric("Incidents", fmt.count(totals["incidents"]))
    cols[1].metric("MTTA", _minutes(totals["mtta_minutes"]))
    cols[2].metric("MTTR", _minutes(totals["mttr_minutes"]))
    cols[3].metric("On Saturdays", fmt.count(rep["saturday"]["incidents"]))
    st.caption(
        "MTTA: first acknowledgement − detection; MTTR: resolution − detection (means), for "
        "incidents detected in the chosen time range; months in the business time zone."
    )
    by_month = [
        {
            "Month": datetime.strptime(r["month"], "%Y-%m").strftime("%B %Y"),
            "Severity": r["severity"],
            "Incidents": r["incidents"],
            "MTTA": _minutes(r["mtta_minutes"]),
            "MTTR": _minutes(r["mttr_minutes"]),
        }
        for r in rep["by_month_severity"]
    ]
    st.dataframe(pd.DataFrame(by_month), hide_index=True)
    left, right = st.columns(2)
    left.dataframe(
        pd.DataFrame(
            [{"Service": r["service"], "Incidents": r["incidents"]} for r in rep["by_service"]]
        ),
        hide_index=True,
    )
    right.dataframe(
        pd.DataFrame(
            [
                {"Wedding impact": fmt.label(r["wedding_impact"]), "Incidents": r["incidents"]}
                for r in rep["by_wedding_impact"]
            ]
        ),
        hide_index=True,
    )


st.title("Incidents")
ui_actions.show_flash(FLASH)
active = data.read_or_stop(active_incidents, now=now)
recent = data.read_or_stop(list_incidents, limit=200)
choices = [i["id"] for i in active] + [
    i["id"] for i in recent if i["status"] in ("resolved", "closed")
]
# The label does not change with the incident's state: the selection is kept by its label.
labels = {i["id"]: f"{i['incident_number']} · {i['title']}" for i in [*active, *recent]}
asked = url_state.get_int("incident")  # notification links open their incident's detail
view = url_state.tabs(TABS, param="tab", default="Active" if asked is None else "Detail")
if view == "Active":
    _active(active)
    if responder:
        _declare()
    if limited:
        _recent(recent)
elif view == "Detail":
    if asked is not None and asked not in choices:
        choices.insert(0, asked)  # an older incident a link names: still shown
    picked = url_state.select(
        st.selectbox,
        "Incident",
        choices,
        param="incident",
        default=asked if asked in choices else None,
        format_func=lambda i: labels.get(i, f"#{i}"),
    )
    if picked is not None:
        _detail(int(picked))
    else:
        st.info("No incidents yet.")
else:
    _report()
