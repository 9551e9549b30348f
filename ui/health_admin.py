"""The Health page's admin forms: add or edit a check, list and add collectors.

Both report a successful action through `after_action(message, check_id=…)`, which reruns the
page at once so every list shows the change (pages/health.py `_after_action`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.collectors.store import COLLECTOR_KINDS, save_collector
from monitoring_core.enums import Role
from monitoring_core.health import queries
from monitoring_core.health.rules import duration_words
from monitoring_core.health.service import save_check
from monitoring_core.health.validate import CHECK_TYPES, CONFIG_EXAMPLES
from monitoring_core.ingest.validate import InvalidItems
from ui import auth, check_detail, data, fmt

__all__ = ["check_form", "collectors_section"]

AfterAction = Callable[..., Any]


def check_form(checks: list[dict], *, after_action: AfterAction) -> None:
    """Admins: add a check or edit one (the saved check stays picked after the rerun)."""
    user = auth.require_role(Role.ADMIN)
    engine = data.get_engine()
    st.subheader("Add or edit a check")
    names = ["New check"] + [c["check_name"] for c in checks]
    if (just_saved := st.session_state.pop("health_edit_pick_next", None)) in names:
        st.session_state["health_edit_pick"] = just_saved  # the saved check stays in the form
    editing = st.selectbox("Check to edit", names, key="health_edit_pick")
    current = next((c for c in checks if c["check_name"] == editing), None)
    # The type sits outside the form so that picking one shows its config template at once.
    kind = st.selectbox(
        "Type", CHECK_TYPES, index=CHECK_TYPES.index(current["check_type"]) if current else 0
    )
    with st.form("health_check_form"):
        name = st.text_input("Name", value=current["check_name"] if current else "")
        service = st.text_input("Service", value=(current or {}).get("service_name") or "")
        left, mid, right = st.columns(3)
        every = left.number_input(
            "Every (s)", 5, 86_400, int(current["check_frequency_seconds"]) if current else 60
        )
        timeout = mid.number_input(
            "Timeout (s)", 0.1, 120.0, float(current["timeout_seconds"]) if current else 10.0
        )
        retries = right.number_input(
            "Retries before down", 0, 20, int(current["retries"]) if current else 2
        )
        critical = st.checkbox(
            "Wedding-critical", value=bool(current and current["wedding_critical"])
        )
        enabled = st.checkbox("Enabled", value=bool(current["is_enabled"]) if current else True)
        config_text = st.text_area(
            "Config (JSON)",
            value=json.dumps(
                current["check_config"]
                if current and current["check_type"] == kind
                else CONFIG_EXAMPLES[kind],
                indent=2,
            ),
            key=f"health_config_{editing}_{kind}",
            height=160,
            help="For a database check, a URL's password shows as *** — type it again to change "
            "the URL. A heartbeat takes `period_seconds`, or a cron `schedule` read in `tz`: "
            '`{"schedule": "0 3 * * *", "tz": "Europe/London", "grace_seconds": 3600}`.',
        )
        submitted = st.form_submit_button("Save")
    if submitted:
        try:
            body = {
                "check_name": name,
                "check_type": kind,
                "service_name": service or None,
                "check_frequency_seconds": int(every),
                "timeout_seconds": float(timeout),
                "retries": int(retries),
                "wedding_critical": critical,
                "is_enabled": enabled,
                "check_config": json.loads(config_text or "{}"),
            }
            if (
                current
                and kind == "database"
                and body["check_config"].get("url") == current["check_config"].get("url")
            ):
                del body["check_config"]  # the shown URL is masked: keep the stored one
            with engine.begin() as conn:
                saved = save_check(
                    conn,
                    body,
                    check_id=current["id"] if current else None,
                    actor=user_actor(user.username),
                    now=clock.now(),
                )
        except json.JSONDecodeError as exc:
            st.error(f"The config is not valid JSON: {fmt.md_escape(exc)}")
        except InvalidItems as exc:
            st.error(
                "Not saved: "
                + fmt.md_escape("; ".join(f"{e.field}: {e.message}" for e in exc.errors))
            )
        else:
            if saved is not None:
                st.session_state["health_edit_pick_next"] = saved.check_name
            after_action(f"Saved '{fmt.md_escape(name)}'.", check_id=saved.id if saved else None)


def collectors_section(*, after_action: AfterAction) -> None:
    """Every collector in words; admins add SQL collectors and Prometheus scrapes."""
    st.subheader("Collectors")
    collectors = data.read_or_stop(queries.collector_table)
    if collectors:
        exact = clock.now()
        st.dataframe(  # words, not codes: "every 5 min", "2 min ago", "off"
            pd.DataFrame(
                {
                    "name": [c["name"] for c in collectors],
                    "kind": [
                        "SQL query" if c["kind"] == "sql" else "Prometheus scrape"
                        for c in collectors
                    ],
                    "metric": [c["metric_name"] or "(from the scrape)" for c in collectors],
                    "every": [f"every {duration_words(c['interval_seconds'])}" for c in collectors],
                    "enabled": ["on" if c["is_enabled"] else "off" for c in collectors],
                    "last run": [
                        check_detail.relative(c["last_run_at"], exact)
                        if c["last_run_at"]
                        else "not yet"
                        for c in collectors
                    ],
                    "last error": [c["last_error"] or "" for c in collectors],
                }
            ),
            hide_index=True,
        )
    else:
        st.caption(
            "No SQL collectors or scrapes yet (the system and database collectors always run)."
        )
    if auth.has_role(Role.ADMIN):
        with st.expander("Add a SQL collector or a Prometheus scrape"), st.form("collector_form"):
            c_name = st.text_input("Name", key="collector_name")
            c_kind = st.selectbox("Kind", COLLECTOR_KINDS, key="collector_kind")
            c_url = st.text_input(
                "Database URL ('self' = this database) or /metrics URL", value="self"
            )
            c_query = st.text_area("Query (kind sql)", "SELECT count(*) AS value FROM users")
            c_metric = st.text_input("Metric name (kind sql)", value="")
            c_every = st.number_input("Every (s)", 10, 86_400, 60)
            if st.form_submit_button("Add collector"):
                fields = {
                    "name": c_name,
                    "kind": c_kind,
                    "url": c_url,
                    "interval_seconds": int(c_every),
                }
                if c_kind == "sql":
                    fields |= {"query": c_query, "metric_name": c_metric or None}
                try:
                    with data.get_engine().begin() as conn:
                        actor = user_actor(auth.require_role(Role.ADMIN).username)
                        save_collector(
                            conn, fields, collector_id=None, actor=actor, now=clock.now()
                        )
                except InvalidItems as exc:
                    problems = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
                    st.error("Not saved: " + fmt.md_escape(problems))
                else:
                    after_action(
                        f"Added '{fmt.md_escape(c_name)}': the worker runs it within "
                        f"{duration_words(int(c_every))}."
                    )
