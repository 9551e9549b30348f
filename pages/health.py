"""Health: every check's status by service, uptime, history, worker status; admins edit checks."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from monitoring_core import clock, sharding
from monitoring_core.audit import user_actor
from monitoring_core.collectors.store import COLLECTOR_KINDS, save_collector
from monitoring_core.enums import Role
from monitoring_core.health import queries, watch
from monitoring_core.health.runner import run_check_now
from monitoring_core.health.service import save_check
from monitoring_core.health.validate import CHECK_TYPES, CONFIG_EXAMPLES
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.rollups import quarantined_ranges
from ui import auth, data, fmt, widgets

auth.require_role(Role.VIEWER)
settings = data.get_settings()
now, tr, tz = widgets.current_now(), widgets.current_time_range(), settings.tz
api_base = settings.api_public_url  # ping URLs: MONITORING_API_PUBLIC_URL, never a guess
WORST = ["critical", "warning", "unknown", "healthy"]

st.title("Health")
# The exact time, not the 30 s-floored `now` shared by cached reads: "last seen" is in seconds.
workers = data.read_or_stop(queries.worker_status, clock.now())
if workers:
    seen = workers[0]
    st.caption(
        f"Worker last seen {fmt.count(seen['seconds_ago'])} s ago on {fmt.md_escape(seen['hostname'])} ({len(workers)} known)"
    )
else:
    st.warning(
        "No worker has reported yet: checks and collectors are not running.",
        icon=":material/engineering:",
    )
if workers:  # who is running, and which share of the alert rules each evaluates
    shares = {w: n for w, n, _c in data.read_or_stop(sharding.owners, "alert_rules")}
    with st.expander(f"Workers ({len(workers)}) and their share of the alert rules"):
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "worker": w["worker_id"],
                        "host": w["hostname"],
                        "pid": w["pid"],
                        "seen (s ago)": round(w["seconds_ago"]),
                        "live": w["seconds_ago"] <= sharding.LEASE.total_seconds(),
                        "alert rules": shares.get(w["worker_id"], 0),
                    }
                    for w in workers
                ]
            ),
            hide_index=True,
        )

replica = data.get_read_router().status()
if replica.configured:  # DATABASE_READ_URL: where page reads go, and how far behind it is
    lag = "unknown" if replica.lag_s is None else f"{replica.lag_s:.1f} s"
    if replica.usable:
        st.caption(f"Read replica: {fmt.md_escape(replica.reason)}, lag {lag}; pages read from it.")
    else:
        st.warning(
            f"Read replica not used ({fmt.md_escape(replica.reason)}): pages read from the "
            f"primary until it is back within "
            f"{fmt.md_escape(f'{data.get_settings().replica_max_lag_s:g}')} s.",
            icon=":material/dns:",
        )

quarantined = data.read_or_stop(quarantined_ranges)
if quarantined:
    st.warning(
        f"{len(quarantined)} rollup range(s) could not be computed and were skipped: charts "
        "miss those buckets until the raw rows are fixed (table rollup_quarantine).",
        icon=":material/report:",
    )
    st.dataframe(pd.DataFrame(quarantined), hide_index=True)  # a table, never markup

failing_jobs = data.read_or_stop(watch.failing_jobs)
if failing_jobs:
    st.error(
        f"{len(failing_jobs)} worker job(s) failed {watch.JOB_FAILING_AFTER} or more times in a "
        "row (each raises the 'Worker job failing' self-alert): their work is not being done.",
        icon=":material/sync_problem:",
    )
    st.dataframe(
        pd.DataFrame(failing_jobs),
        hide_index=True,
        column_config={
            "failures": "failed runs in a row",
            "last_error": "last error",
            "last_failed_at": st.column_config.DatetimeColumn(
                "last failure", format="D MMM HH:mm:ss"
            ),
            "last_ok_at": st.column_config.DatetimeColumn("last success", format="D MMM HH:mm:ss"),
        },
    )

# Ping tokens and check headers are secrets: shown to admins only, who edit the checks.
checks = data.read_or_stop(
    queries.check_summaries, now, base_url=api_base, reveal_secrets=auth.has_role(Role.ADMIN)
)


def _status_grid(checks: list[dict]) -> None:
    services: dict[str, list[dict]] = {}
    for check in checks:
        services.setdefault(check["service_name"] or check["check_name"], []).append(check)
    columns = st.columns(3)
    for i, (service, members) in enumerate(sorted(services.items())):
        worst = min((c["status"] for c in members), key=WORST.index)
        with columns[i % 3].container(border=True):
            st.markdown(f"**{fmt.md_escape(service)}** &nbsp; {widgets.status_badge(worst)}")
            for c in members:
                took = (
                    fmt.milliseconds(c["response_time_ms"])
                    if c["response_time_ms"] is not None
                    else "–"
                )
                st.markdown(
                    f"{widgets.status_badge(c['status'])} {fmt.md_escape(c['check_name'])} · {took}"
                )


def _uptime_table(checks: list[dict]) -> None:
    frame = pd.DataFrame(checks)
    frame["last_success_at"] = pd.to_datetime(frame["last_success_at"], utc=True).dt.tz_convert(tz)
    pct = st.column_config.NumberColumn
    st.dataframe(
        frame[
            [
                "check_name",
                "service_name",
                "check_type",
                "status",
                "wedding_critical",
                "uptime_24h",
                "uptime_7d",
                "uptime_30d",
                "response_time_ms",
                "last_success_at",
                "last_message",
            ]
        ],
        hide_index=True,
        column_config={
            "check_name": "check",
            "service_name": "service",
            "check_type": "type",
            "wedding_critical": "wedding-critical",
            "last_success_at": st.column_config.DatetimeColumn(
                "last success", format="D MMM HH:mm"
            ),
            "last_message": "last result",
            "uptime_24h": pct("uptime 24 h", format="percent"),
            "uptime_7d": pct("uptime 7 d", format="percent"),
            "uptime_30d": pct("uptime 30 d", format="percent"),
            "response_time_ms": pct("last response (ms)", format="%.0f"),
        },
    )


def _detail(checks: list[dict]) -> dict:
    by_name = {c["check_name"]: c for c in checks}
    chosen = by_name[st.selectbox("Check", list(by_name), key="health_check_pick")]
    if chosen["ping_url"]:
        st.code(f"curl -fsS -m 10 --retry 5 {chosen['ping_url']}", language="bash")
    results = data.read_or_stop(queries.check_results_frame, chosen["id"], tr.start, tr.end)
    if results.empty:
        st.info("No results in this range yet.")
    else:
        st.line_chart(results.set_index("time")["response_time_ms"], y_label="response time (ms)")
    flips = data.read_or_stop(queries.check_flips, tr.start, chosen["id"])
    st.markdown("**Status changes**")
    if flips:
        table = pd.DataFrame(flips)
        table["time"] = pd.to_datetime(table["time"], utc=True).dt.tz_convert(tz)
        st.dataframe(
            table[["time", "from_status", "to_status", "reason", "is_auto_recovery"]],
            hide_index=True,
            column_config={
                "time": st.column_config.DatetimeColumn("when", format="D MMM HH:mm:ss"),
                "from_status": "from",
                "to_status": "to",
                "is_auto_recovery": "auto-recovery",
            },
        )
    else:
        st.caption("No status change in this range.")
    return chosen


if not checks:
    st.info(
        "No health checks yet. Admins add them below or with `POST /api/admin/monitoring/health/checks`."
    )
    chosen = None
else:
    _status_grid(checks)
    st.subheader("Uptime")
    _uptime_table(checks)
    st.subheader("Check detail")
    chosen = _detail(checks)

if auth.has_role(Role.ADMIN):
    user = auth.require_role(Role.ADMIN)
    engine = data.get_engine()
    if chosen is not None and st.button(
        "Run now", key="health_run_now", icon=":material/play_arrow:"
    ):
        run = run_check_now(engine, chosen["id"], clock.now())
        if run is not None:
            st.cache_data.clear()
            show = st.success if run.outcome.success else st.error
            show(f"{run.outcome.message} → {run.transition.status.value}")
    st.subheader("Add or edit a check")
    names = ["New check"] + [c["check_name"] for c in checks]
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
            help="For a database check, a URL's password shows as *** — type it again to change the URL.",
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
                save_check(
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
            st.cache_data.clear()
            st.success(f"Saved '{fmt.md_escape(name)}'.")

st.subheader("Collectors")
collectors = data.read_or_stop(queries.collector_table)
if collectors:
    st.dataframe(
        pd.DataFrame(collectors)[
            [
                "name",
                "kind",
                "metric_name",
                "interval_seconds",
                "is_enabled",
                "last_run_at",
                "last_error",
            ]
        ],
        hide_index=True,
        column_config={"interval_seconds": "every (s)", "last_error": "last error"},
    )
else:
    st.caption("No SQL collectors or scrapes yet (the system and database collectors always run).")
if auth.has_role(Role.ADMIN):
    with st.expander("Add a SQL collector or a Prometheus scrape"), st.form("collector_form"):
        c_name = st.text_input("Name", key="collector_name")
        c_kind = st.selectbox("Kind", COLLECTOR_KINDS, key="collector_kind")
        c_url = st.text_input("Database URL ('self' = this database) or /metrics URL", value="self")
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
                    save_collector(conn, fields, collector_id=None, actor=actor, now=clock.now())
            except InvalidItems as exc:
                problems = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
                st.error("Not saved: " + fmt.md_escape(problems))
            else:
                st.cache_data.clear()
                st.success(
                    f"Added '{fmt.md_escape(c_name)}': the worker runs it within {int(c_every)} s."
                )
