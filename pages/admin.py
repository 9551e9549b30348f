"""Admin: the audit log with filters, settings, silences, runbooks, collectors and the
configuration file.

Responders may end and add silences here; everything else is for admins. Every change goes
through a domain service: its role check and its audit row.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.config_io import export_config
from monitoring_core.config_io.audit_read import audit_actions, search_audit
from monitoring_core.config_io.settings_rows import (
    EXAMPLES,
    KNOWN_SETTINGS,
    clear_setting,
    read_settings,
    save_setting,
)
from monitoring_core.enums import Role
from ui import actions, auth, data, fmt, url_state, widgets
from ui.admin_sections import collector_editor, runbook_editor, silences_section
from ui.settings_forms import LIVE_KEYS, live_settings_forms

user = auth.require_role(Role.RESPONDER)
is_admin = auth.has_role(Role.ADMIN)
WHO = (user_actor(user.username), user.role.value)
FLASH = "admin_flash"
now = widgets.current_now()
config = data.get_settings()

st.title("Admin")
actions.show_flash(FLASH)
# The section is in the URL (?tab=Runbooks); responders, who may only work silences, start there.
view = url_state.tabs(
    ["Audit log", "Settings", "Silences", "Runbooks", "Collectors", "Configuration file"],
    param="tab",
    default="Audit log" if is_admin else "Silences",
)


def _admins_only() -> bool:
    if not is_admin:
        st.info("Only admins see this section.", icon=":material/lock:")
    return is_admin


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _parse_days(raw: str) -> tuple[date, date] | None:
    """`2026-06-01..2026-06-07` from the URL; None when it is not two days in order."""
    first, _, last = raw.partition("..")
    try:
        days = (date.fromisoformat(first), date.fromisoformat(last))
    except ValueError:
        return None
    return days if days[0] <= days[1] else None


def _action_words(action: str) -> str:
    """An audit action as words: `incident.status_changed` → `Incident: status changed`."""
    subject, _, verb = action.partition(".")
    return f"{fmt.label(subject)}: {fmt.label(verb).lower()}" if verb else fmt.label(action)


def _store_setting(conn: Connection, *, key: str, raw: str) -> None:
    if not raw.strip():  # empty: back to the default
        clear_setting(conn, key=key, actor=WHO[0], role=WHO[1], now=clock.now())
        return
    value = json.loads(raw)  # a JSONDecodeError is a ValueError: refused with its reason
    save_setting(conn, key=key, value=value, actor=WHO[0], role=WHO[1], now=clock.now())


if view == "Audit log":
    if _admins_only():
        # The filters are in the URL: ?who=ana&action=user.create&target=key&days=2026-06-01..
        cols = st.columns([2, 3, 2, 3])
        with cols[0]:
            who = url_state.text("Who (actor contains)", param="who", key="audit_who")
        what = url_state.multi(
            cols[1].multiselect,
            "What (actions)",
            data.read_or_stop(audit_actions),
            param="action",
            key="audit_actions",
            format_func=_action_words,
        )
        with cols[2]:
            target = url_state.text("On (target contains)", param="target", key="audit_target")
        today = now.astimezone(UTC).date()
        week = (today - timedelta(days=7), today)
        url_state.seed("days", "audit_when", _parse_days, week, sticky=False)
        days = cols[3].date_input("When (UTC days)", key="audit_when")
        if isinstance(days, tuple) and len(days) == 2 and tuple(days) != week:
            url_state.put("days", f"{days[0].isoformat()}..{days[1].isoformat()}")
        elif isinstance(days, tuple) and len(days) == 2:
            url_state.put("days", None)
        first, last = (days[0], days[-1]) if isinstance(days, tuple) and days else (today, today)
        rows = data.read_or_stop(
            search_audit,
            since=_day_start(first),
            until=_day_start(last) + timedelta(days=1),
            actor=who,
            actions=what or None,
            target=target,
        )
        st.caption(f"{len(rows)} entries (newest first, at most 500).")
        tz = data.business_tz()
        entries = [
            {
                "Time": fmt.when_exact(r["time"], tz, now),
                "Who": fmt.actor(r["actor"]),
                "Action": _action_words(r["action"]),
                "Target": r["target"] or "—",
                "Details": fmt.pairs(r["details"], labels=True) or "—",
            }
            for r in rows
        ]
        columns = ["Time", "Who", "Action", "Target", "Details"]
        st.dataframe(pd.DataFrame(entries, columns=columns), hide_index=True, width="stretch")

elif view == "Settings":
    if _admins_only():
        current = data.read_or_stop(read_settings)
        live_settings_forms(FLASH, WHO, current)
        for key, (meaning, _check) in KNOWN_SETTINGS.items():
            if key in LIVE_KEYS:  # edited in the forms above
                continue
            st.markdown(
                f"**{fmt.md_escape(fmt.label(key))}** ({fmt.md_code(key)}): "
                f"{fmt.md_escape(meaning)}"
            )
            shown = json.dumps(current[key], indent=1) if key in current else ""
            raw = st.text_area(
                "JSON value (empty: the default)",
                shown,
                key=f"setting_{key}",
                placeholder=f"e.g. {json.dumps(EXAMPLES.get(key))}",
                height=80,
            )
            left, right = st.columns([1, 5])
            if left.button("Save", key=f"save_{key}"):
                actions.run(
                    FLASH,
                    partial(_store_setting, key=key, raw=raw),
                    done=f"{key} saved",
                    failed=f"{key}: ",
                    refused=(ValueError,),
                )
            if right.button("Back to default", key=f"clear_{key}"):
                actions.run(
                    FLASH,
                    partial(clear_setting, key=key, actor=WHO[0], role=WHO[1], now=clock.now()),
                    done=f"{key} back to its default",
                    refused=(ValueError,),
                )
        st.markdown("**Set in the environment** (restart to change):")
        st.dataframe(
            pd.DataFrame(
                [
                    (
                        "MONITORING_SESSION_IDLE_MINUTES",
                        fmt.duration(config.session_idle_minutes * 60),
                        "Sign-out of the UI after this long idle",
                    ),
                ],
                columns=["Variable", "Value", "What"],
            ),
            hide_index=True,
        )

elif view == "Silences":
    silences_section(FLASH, WHO)

elif view == "Runbooks":
    if _admins_only():
        runbook_editor(FLASH, WHO)

elif view == "Collectors":
    if _admins_only():
        collector_editor(FLASH, WHO)

else:
    if _admins_only():
        st.markdown(
            "The whole configuration as YAML (`python -m monitoring_core config export`): "
            "secrets appear as `${ENV}` references, never in clear. Apply a file with "
            "`python -m monitoring_core config apply FILE --dry-run` first."
        )
        if st.button("Prepare the file", key="prepare_export"):
            with data.get_engine().connect() as conn:
                text, needed = export_config(conn, now=clock.now())
            st.download_button("Download monitoring-config.yaml", text, "monitoring-config.yaml")
            if needed:
                st.caption("Set before applying: " + ", ".join(fmt.md_code(n) for n in needed))
