"""Health: worker status, then one section (`?section=checks|collectors|storage`): every
check's status by service, uptime, one check's detail (ping log, timeline;
`?check=ID&tab=Log|Timeline|Response times`) and the check form; the SQL collectors and
scrapes; storage. Responders pause and resume checks, admins edit them. After an action the
page reruns on the same check, lists fresh."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from monitoring_core import clock, sharding
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.health import queries, watch
from monitoring_core.health.rules import duration_words
from monitoring_core.health.runner import run_check_now
from monitoring_core.health.service import pause_check, resume_check
from monitoring_core.rollups import quarantined_ranges
from ui import auth, check_detail, data, fmt, health_admin, storage_section, url_state, widgets

auth.require_role(Role.VIEWER)
settings = data.get_settings()
now, tr, tz = widgets.current_now(), widgets.current_time_range(), data.business_tz()
api_base = settings.api_public_url  # ping URLs: MONITORING_API_PUBLIC_URL, never a guess
WORST = ["critical", "warning", "unknown", "paused", "healthy"]
FLASH, PENDING = "health_flash", "health_pending"  # a message and selections for the rerun
SECTIONS = {"checks": "Checks", "collectors": "Collectors", "storage": "Storage"}


def _after_action(message: str, *, ok: bool = True, check_id: int | None = None) -> None:
    """Rerun at once so every list shows the change; the message and the check survive it."""
    st.session_state[FLASH] = (ok, message)
    if check_id is not None:
        st.session_state[PENDING] = check_id
    st.cache_data.clear()
    st.rerun()


st.title("Health")
if flash := st.session_state.pop(FLASH, None):
    (st.success if flash[0] else st.error)(flash[1])
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
                        "Worker": w["worker_id"],
                        "Host": w["hostname"],
                        "PID": w["pid"],
                        "Last seen": f"{duration_words(w['seconds_ago'])} ago",
                        "Live": "Yes"
                        if w["seconds_ago"] <= sharding.LEASE.total_seconds()
                        else "No",
                        "Alert rules": shares.get(w["worker_id"], 0),
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
    read_at = clock.now()
    rows = [
        {"Family": fmt.label(q["family"]), "Table": q["target_table"],
         "From": check_detail.when(q["range_start"], tz, read_at),
         "To": check_detail.when(q["range_end"], tz, read_at), "Error": q["error"],
         "Attempts": q["attempts"], "First seen": check_detail.when(q["first_seen"], tz, read_at),
         "Last seen": check_detail.when(q["last_seen"], tz, read_at)}
        for q in quarantined
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True)  # a table, never markup

failing_jobs = data.read_or_stop(watch.failing_jobs)
if failing_jobs:
    st.error(
        f"{len(failing_jobs)} worker job(s) failed {watch.JOB_FAILING_AFTER} or more times in a "
        "row (each raises the 'Worker job failing' self-alert): their work is not being done.",
        icon=":material/sync_problem:",
    )
    read_at = clock.now()
    rows = [
        {"Job": j["job"], "Failed runs in a row": j["failures"], "Last error": j["last_error"],
         "Last failure": check_detail.when(j["last_failed_at"], tz, read_at),
         "Last success": check_detail.when(j["last_ok_at"], tz, read_at)}
        for j in failing_jobs
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True)

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
                if c["check_type"] == "heartbeat":
                    took = f"pinged {check_detail.relative(c['last_ping_at'], clock.now())}"
                elif c["response_time_ms"] is not None:
                    took = fmt.milliseconds(c["response_time_ms"])
                else:
                    took = "not run yet"
                st.markdown(
                    f"{widgets.status_badge(c['status'])} {fmt.md_escape(c['check_name'])} · {took}"
                )


def _next_ping(check: dict, at: datetime) -> str:
    due = check["next_expected_at"]
    if check["check_type"] != "heartbeat":
        return ""
    if check["paused"]:
        return "paused"
    if due is None:
        return "any time"
    return (
        check_detail.relative(due, at)
        if due >= at
        else f"overdue {duration_words((at - due).total_seconds())}"
    )


def _uptime_table(checks: list[dict]) -> None:
    exact = clock.now()
    frame = check_detail.uptime_frame(checks, tz, exact, next_ping=_next_ping)
    pct = st.column_config.NumberColumn
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "Uptime 24 h": pct(format="percent"),
            "Uptime 7 d": pct(format="percent"),
            "Uptime 30 d": pct(format="percent"),
            "Last response (ms)": pct(format="localized", step=1),
        },
    )


def _actions(chosen: dict) -> None:
    """Pause or resume (responders and admins; audited); run now (admins)."""
    if not auth.has_role(Role.RESPONDER):
        st.caption("Responders and admins can pause this check.")
        return
    with st.container(horizontal=True):  # side by side, wrapping on a phone
        _pause_button(chosen)
        if auth.has_role(Role.ADMIN):
            _run_now_button(chosen)


def _run_now_button(chosen: dict) -> None:
    if st.button(
        "Run now",
        key="health_run_now",
        icon=":material/play_arrow:",
        disabled=chosen["paused"],
        help="Resume the check to run it." if chosen["paused"] else "Probe it now and record it.",
    ):
        auth.require_role(Role.ADMIN)
        run = run_check_now(data.get_engine(), chosen["id"], clock.now())
        if run is not None:
            _after_action(
                f"{fmt.md_escape(chosen['check_name'])}: {fmt.md_escape(run.outcome.message)} → "
                f"{fmt.label(run.transition.status.value)}",
                ok=run.outcome.success,
                check_id=chosen["id"],
            )


def _pause_button(chosen: dict) -> None:
    paused = chosen["paused"]
    label, icon = (
        ("Resume", ":material/play_circle:") if paused else ("Pause", ":material/pause_circle:")
    )
    if st.button(
        label,
        key="health_pause",
        icon=icon,
        help="A paused check is not run, marked down or alerted on; a heartbeat's next ping resumes it.",
    ):
        user = auth.require_role(Role.RESPONDER)
        change = resume_check if paused else pause_check
        with data.get_engine().begin() as conn:
            change(conn, chosen["id"], actor=user_actor(user.username), now=clock.now())
        name = fmt.md_escape(chosen["check_name"])
        _after_action(
            f"Resumed '{name}': it runs again (a heartbeat waits for its next ping)."
            if paused
            else f"Paused '{name}': it is not run, marked down or alerted on until resumed.",
            check_id=chosen["id"],
        )


def _detail(checks: list[dict]) -> None:
    by_id = {c["id"]: c for c in checks}
    if (pending := st.session_state.pop(PENDING, None)) in by_id:
        st.session_state["url_check"] = pending  # the check just acted on stays open
    picked = url_state.select(
        st.selectbox,
        "Check",
        list(by_id),
        param="check",
        key="url_check",
        format_func=lambda i: by_id[i]["check_name"],
    )
    assert picked is not None
    chosen = by_id[picked]
    exact, until = clock.now(), widgets.events_until(tr)  # a ping just received is listed
    detail = data.read_or_stop(
        queries.check_detail,
        picked,
        exact,
        tr.start,
        until,
        base_url=api_base,
        reveal_secrets=auth.has_role(Role.ADMIN),
    )
    if detail is None:
        st.info("This check no longer exists.")
        return

    def actions() -> None:
        _actions(chosen)
        if chosen["ping_url"]:
            st.code(f"curl -fsS -m 10 --retry 5 {chosen['ping_url']}", language="bash")

    check_detail.render(
        detail,
        tz=tz,
        now=exact,
        actions=actions,
        response_times=lambda: data.read_or_stop(
            queries.check_results_frame, picked, tr.start, until
        ),
    )


# One section drawn at a time (`?section=`): the checks, with the status grid, uptime, one
# check's detail and (admins) the check form; the collectors; storage. All at once were ~1.1 s
# in the browser to open (six tables, two forms, the storage cards).
section = url_state.select(
    st.segmented_control,
    "Section",
    list(SECTIONS),
    param="section",
    key="health_section",
    format_func=SECTIONS.__getitem__,
    required=True,
    label_visibility="collapsed",
)
if section == "collectors":
    health_admin.collectors_section(after_action=_after_action)
elif section == "storage":
    storage_section.render(now)  # bytes per sample, tiers, compaction lag, a year (H7)
else:
    if not checks:
        st.info(
            "No health checks yet. Admins add them below or with "
            "`POST /api/admin/monitoring/health/checks`."
        )
    else:
        _status_grid(checks)
        st.subheader("Uptime")
        _uptime_table(checks)
        st.subheader("Check detail")
        _detail(checks)
    if auth.has_role(Role.ADMIN):
        health_admin.check_form(checks, after_action=_after_action)
