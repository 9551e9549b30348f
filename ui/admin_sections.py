"""Sections of the Admin page: silences (recurring, end now), the runbook steps editor and
collector editing.

Each action goes through the domain service (role check, audit row) in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.alerts import service as alert_service
from monitoring_core.alerts.silences import list_silences
from monitoring_core.collectors.store import list_collectors, public_collector, save_collector
from monitoring_core.enums import Role
from monitoring_core.incidents import runbooks
from monitoring_core.incidents.service import IncidentInvalid
from monitoring_core.roles import require_role
from ui import actions, data, fmt

__all__ = ["collector_editor", "runbook_editor", "silence_line", "silences_section"]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
STEP_COLUMNS = ["title", "kind", "config", "wedding_day_safe"]


def _act(flash: str, label: str, work: Callable[..., Any], who: tuple[str, str], **kw: Any) -> None:
    actor, role = who
    actions.run(
        flash,
        lambda conn: work(conn, actor=actor, role=role, now=clock.now(), **kw),
        done=f"{label} done",
        failed=f"{label} refused: ",
        refused=(ValueError, LookupError, PermissionError),
    )


def _matchers(matchers: list[dict[str, Any]]) -> str:
    """`service=photos, endpoint=~/api/photos.*` (as the Alerts page writes them)."""
    return ", ".join(
        f"{m.get('name')}{'=~' if m.get('is_regex') else '='}{m.get('value')}" for m in matchers
    )


def silence_line(row: dict[str, Any], tz: ZoneInfo, now: datetime) -> str:
    """One silence as markdown: what it matches, when (business time zone, in words), why."""
    window = row["recurrence"] or {}
    weekly = (
        f" every {WEEKDAYS[window['weekday']]} {window['start']}–{window['end']}"
        if isinstance(window.get("weekday"), int)
        else ""
    )
    until = fmt.when(row["ends_at"], tz, now)
    reason = f": {row['reason']}" if row.get("reason") else ""
    words = fmt.md_escape(f"{weekly} until {until}{reason}")
    return f"{fmt.md_code(_matchers(row['matchers']))} {words}"


def silences_section(flash: str, who: tuple[str, str]) -> None:
    """Running and coming silences with End now, and a form for a recurring one."""
    now = clock.now()
    rows = data.read_or_stop(list_silences, now=now)
    if not rows:
        st.caption("No silence is running or planned.")
    tz = data.business_tz()
    for row in rows:
        cols = st.columns([6, 1])
        cols[0].markdown(silence_line(row, tz, now))
        if cols[1].button("End now", key=f"end_silence_{row['id']}"):
            _act(flash, "End silence", alert_service.silence_end, who, silence_id=row["id"])
    with st.form("recurring_silence"):
        st.markdown("**Recurring maintenance window** (business time zone)")
        label = st.selectbox("Label", ["service", "alertname", "severity", "endpoint"])
        value = st.text_input("Value", key="recurring_value")
        day = st.selectbox("Weekday", WEEKDAYS, key="recurring_day")
        start = st.text_input("From (HH:MM)", "02:00", key="recurring_start")
        end = st.text_input("To (HH:MM)", "03:00", key="recurring_end")
        weeks = st.number_input("For how many weeks", 1, 104, 12, key="recurring_weeks")
        reason = st.text_input("Reason", key="recurring_reason")
        if st.form_submit_button("Add recurring silence"):
            _act(
                flash,
                "Add recurring silence",
                alert_service.silence_create,
                who,
                matchers=[{"name": label, "value": value, "is_regex": False}],
                starts_at=now,
                ends_at=now + timedelta(weeks=int(weeks)),
                reason=reason,
                recurrence={"weekday": WEEKDAYS.index(day), "start": start, "end": end},
            )


def _steps_frame(steps: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{**step, "config": json.dumps(step.get("config") or {})} for step in steps]
    frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
    frame["wedding_day_safe"] = frame["wedding_day_safe"].fillna(False).astype(bool)
    return frame


def _steps_from(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Editor rows back into steps (rows without a title are dropped)."""
    steps = []
    for row in frame.to_dict("records"):
        if not str(row.get("title") or "").strip():
            continue
        try:
            config = json.loads(row.get("config") or "{}")
        except ValueError:
            raise IncidentInvalid(
                [{"field": "config", "message": f"not JSON in step {row['title']!r}"}]
            ) from None
        steps.append(
            {
                "title": row["title"],
                "kind": row.get("kind") or "manual",
                "config": config,
                "wedding_day_safe": bool(row.get("wedding_day_safe")),
            }
        )
    return steps


def runbook_editor(flash: str, who: tuple[str, str]) -> None:
    """Pick a runbook (or a new one) and edit its fields and steps in a table."""
    books = data.read_or_stop(runbooks.list_runbooks)
    titles = {f"{b['title']} (#{b['id']})": b for b in books}
    choice = st.selectbox("Runbook", ["New runbook", *titles], key="runbook_choice")
    book = titles.get(choice, {})
    ident = book.get("id", "new")
    title = st.text_input("Title", book.get("title", ""), key=f"rb_title_{ident}")
    description = st.text_area(
        "Description", book.get("description", ""), key=f"rb_description_{ident}"
    )
    service = st.text_input("Service", book.get("service_name") or "", key=f"rb_service_{ident}")
    approval = st.checkbox(
        "Every step needs a second person's approval",
        bool(book.get("requires_approval")),
        key=f"rb_approval_{ident}",
    )
    st.caption(
        'Steps: kind manual, http (`{"url": …}`), notify (`{"channels": [ids], '
        '"message": …}`) or health_check (`{"check_id": id}`).'
    )
    edited = st.data_editor(
        _steps_frame(book.get("steps") or [{"title": "", "kind": "manual", "config": {}}]),
        num_rows="dynamic",
        key=f"rb_steps_{ident}",
        column_config={
            "title": st.column_config.TextColumn("Step"),
            "kind": st.column_config.SelectboxColumn("Kind", options=list(runbooks.STEP_KINDS)),
            "config": st.column_config.TextColumn("Settings (JSON)"),
            "wedding_day_safe": st.column_config.CheckboxColumn(
                "Safe on a wedding day", default=False
            ),
        },
    )
    if st.button("Save runbook", key=f"rb_save_{ident}"):
        body = {
            "title": title,
            "description": description,
            "service_name": service.strip() or None,
            "requires_approval": approval,
            "alert_rule_id": book.get("alert_rule_id"),
            "error_group_id": book.get("error_group_id"),
        }

        def save(conn: Any, *, actor: str, role: str, now: Any) -> Any:
            full = {**body, "steps": _steps_from(edited)}
            if book:
                return runbooks.update_runbook(
                    conn, runbook_id=book["id"], body=full, actor=actor, role=role, now=now
                )
            return runbooks.create_runbook(conn, body=full, actor=actor, role=role, now=now)

        _act(flash, "Save runbook", save, who)


def collector_editor(flash: str, who: tuple[str, str]) -> None:
    """Change a SQL collector or Prometheus scrape (the Health page adds them); a blank URL
    keeps the stored one (it may hold a password and is never shown)."""
    rows = data.read_or_stop(list_collectors)
    if not rows:
        st.caption("No SQL collectors or scrapes yet: add them on the Health page.")
        return
    by_label = {f"{row['name']} (#{row['id']})": row for row in rows}
    row = by_label[st.selectbox("Collector", list(by_label), key="collector_choice")]
    ident = row["id"]
    st.caption(f"URL: {fmt.md_code(public_collector(row)['url'])} · last error: "
               f"{fmt.md_escape(row['last_error'] or 'none')}")  # fmt: skip
    with st.form(f"collector_edit_{ident}"):
        name = st.text_input("Name", row["name"], key=f"col_name_{ident}")
        url = st.text_input("New URL (blank: keep)", "", key=f"col_url_{ident}", type="password")
        query = st.text_area("Query", row["query"] or "", key=f"col_query_{ident}")
        metric = st.text_input("Metric name", row["metric_name"] or "", key=f"col_metric_{ident}")
        every = st.number_input(
            "Every (s)", 10, 86_400, int(row["interval_seconds"]), key=f"col_every_{ident}"
        )
        enabled = st.checkbox("Enabled", bool(row["is_enabled"]), key=f"col_enabled_{ident}")
        if st.form_submit_button("Save collector"):
            body: dict[str, Any] = {
                "name": name,
                "interval_seconds": int(every),
                "is_enabled": enabled,
                "metric_name": metric.strip() or None,
            }
            if row["kind"] == "sql":
                body["query"] = query
            if url.strip():
                body["url"] = url.strip()
            _act(flash, "Save collector", _save_collector, who, collector_id=ident, body=body)


def _save_collector(
    conn: Any, *, collector_id: int, body: dict[str, Any], actor: str, role: str, now: Any
) -> Any:
    require_role(role, Role.ADMIN)  # the API route is admin-scoped; so is this form
    saved = save_collector(conn, body, collector_id=collector_id, actor=actor, now=now)
    if saved is None:
        raise LookupError(f"collector {collector_id} is gone")
    return saved
