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
from monitoring_core.health.custom import CUSTOM_CHECKS
from monitoring_core.health.rules import duration_words
from monitoring_core.health.service import save_check
from monitoring_core.health.store import get_check
from monitoring_core.health.validate import CHECK_TYPES, CONFIG_EXAMPLES, HTTP_METHODS
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
    kind: str = st.selectbox(
        "Type",
        CHECK_TYPES,
        index=CHECK_TYPES.index(current["check_type"]) if current else 0,
        format_func=lambda name: _TYPE_NAMES.get(name, name),
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
        st.markdown(f"**{_KIND_WORDS[kind]}**")
        base = (
            current["check_config"]
            if current and current["check_type"] == kind
            else CONFIG_EXAMPLES[kind]
        )
        try:
            config: dict[str, Any] | str = _config_fields(kind, base, f"{editing}_{kind}")
        except ValueError as exc:  # a headers line or the custom check's settings
            config = str(exc)
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
                "check_config": config,
            }
            if isinstance(config, str):
                raise ValueError(config)
            with engine.begin() as conn:
                if (
                    current
                    and kind == "database"
                    and config.get("url") == current["check_config"].get("url")
                    and (stored := get_check(conn, current["id"])) is not None
                ):  # the URL shown with its password masked: the stored one, the rest as typed
                    body["check_config"] = {**config, "url": stored.check_config.get("url")}
                saved = save_check(
                    conn,
                    body,
                    check_id=current["id"] if current else None,
                    actor=user_actor(user.username),
                    now=clock.now(),
                )
        except InvalidItems as exc:
            st.error(
                "Not saved: "
                + fmt.md_escape("; ".join(f"{e.field}: {e.message}" for e in exc.errors))
            )
        except ValueError as exc:  # the form's own: a headers line, the custom settings
            st.error(f"Not saved: {fmt.md_escape(exc)}")
        else:
            if saved is not None:
                st.session_state["health_edit_pick_next"] = saved.check_name
            after_action(f"Saved '{fmt.md_escape(name)}'.", check_id=saved.id if saved else None)


_TYPE_NAMES = {
    "http": "HTTP(S) page",
    "tcp": "TCP port",
    "database": "Database query",
    "heartbeat": "Heartbeat (pings or a cron schedule)",
    "custom": "Built-in check",
}
_KIND_WORDS = {
    "http": "The page to fetch",
    "tcp": "The port to connect to",
    "database": "The database to query",
    "heartbeat": "When a ping is expected (a job pings the check's URL)",
    "custom": "The built-in check to run",
}


def _config_fields(kind: str, base: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A check type's settings as fields, read into the API's `check_config` (validated by
    `health.validate` on save). ValueError for a headers line or custom settings that do not
    parse."""

    def key(name: str) -> str:
        return f"health_cfg_{name}_{suffix}"

    if kind == "http":
        url = st.text_input("URL", str(base.get("url") or ""), key=key("url"))
        left, mid, right = st.columns(3)
        method = str(base.get("method") or "GET").upper()
        method = left.selectbox(
            "Method", HTTP_METHODS, index=HTTP_METHODS.index(method) if method in HTTP_METHODS
            else 0, key=key("method"),
        )  # fmt: skip
        status = mid.number_input(
            "Expected status", 100, 599, int(base.get("expected_status") or 200), key=key("status")
        )
        slow = right.number_input(
            "Slow above (ms)", 0, 600_000, int(base.get("max_response_time_ms") or 0),
            key=key("slow"), help="A slower answer counts as a failure; 0: no limit.",
        )  # fmt: skip
        keyword = st.text_input(
            "Text the page must contain (optional)", str(base.get("keyword") or ""),
            key=key("keyword"),
        )  # fmt: skip
        follow = st.checkbox(
            "Follow redirects", bool(base.get("follow_redirects", False)), key=key("follow")
        )
        lines = st.text_area(
            "Request headers (optional, one `Name: value` a line)",
            "\n".join(f"{h}: {v}" for h, v in dict(base.get("headers") or {}).items()),
            key=key("headers"), height=70,
        )  # fmt: skip
        config: dict[str, Any] = {"url": url.strip(), "method": method,
                                  "expected_status": int(status), "follow_redirects": follow}  # fmt: skip
        if headers := _headers(lines):
            config["headers"] = headers
        if keyword:
            config["keyword"] = keyword
        if slow:
            config["max_response_time_ms"] = int(slow)
        return config
    if kind == "tcp":
        left, right = st.columns([3, 1])
        host = left.text_input("Host", str(base.get("host") or ""), key=key("host"))
        port = right.number_input("Port", 1, 65_535, int(base.get("port") or 443), key=key("port"))
        return {"host": host.strip(), "port": int(port)}
    if kind == "database":
        url = st.text_input(
            "Database URL", str(base.get("url") or ""), key=key("url"),
            help="A stored password shows as *** — type the URL again to change it.",
        )  # fmt: skip
        query = st.text_input("Query", str(base.get("query") or "SELECT 1"), key=key("query"))
        return {"url": url.strip(), "query": query}
    if kind == "heartbeat":
        left, mid, right = st.columns(3)
        period = left.number_input(
            "Every (s)", 0, 31 * 86_400, int(base.get("period_seconds") or 0), key=key("period"),
            help="How often a ping is due; 0 with a cron schedule.",
        )  # fmt: skip
        cron = mid.text_input(
            "Or a cron schedule", str(base.get("schedule") or ""), key=key("cron"),
            placeholder="0 3 * * *", help="Five fields, as crontab: minute hour day month weekday.",
        )  # fmt: skip
        zone = right.text_input(
            "Its time zone", str(base.get("tz") or data.business_tz().key), key=key("tz")
        )
        grace = st.number_input(
            "Grace (s)", 0, 31 * 86_400, int(base.get("grace_seconds") or 0), key=key("grace"),
            help="How late a ping may be before the check is down.",
        )  # fmt: skip
        beat: dict[str, Any] = {"grace_seconds": int(grace)}
        if cron.strip():
            return {**beat, "schedule": cron.strip(), "tz": zone.strip() or "UTC"}
        return {**beat, "period_seconds": int(period)}
    names = sorted(CUSTOM_CHECKS)
    chosen = str(base.get("callable") or "")
    picked = st.selectbox(
        "Check", names, index=names.index(chosen) if chosen in names else 0, key=key("callable")
    )
    settings = st.text_area(
        "Its settings (JSON, optional)",
        json.dumps({k: v for k, v in base.items() if k != "callable"}, indent=2),
        key=key("settings"), height=90,
    )  # fmt: skip
    try:
        extra = json.loads(settings or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"the check's settings are not valid JSON: {exc}") from exc
    if not isinstance(extra, dict):
        raise ValueError("the check's settings must be a JSON object")
    return {**extra, "callable": picked}


def _headers(lines: str) -> dict[str, str]:
    """`Name: value` lines as a dict; ValueError naming a line without a name and a colon."""
    out: dict[str, str] = {}
    for number, line in enumerate(lines.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"request header line {number} is not `Name: value`")
        out[name.strip()] = value.strip()
    return out


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
