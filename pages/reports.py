"""Reports: the weekly digests (monitoring_core.flows.digest) — each complete week's uptime,
incidents with MTTA/MTTR, top error groups, KPI changes and Saturday performance, to read here
or download as Markdown; admins can build last week's digest now."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from monitoring_core import clock
from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.flows.digest import (
    WEEKDAYS,
    list_digests,
    minutes_text,
    ms_text,
    percent_text,
    read_schedule,
    store_digest,
)
from ui import actions, auth, data

user = auth.require_role(Role.VIEWER)
tz = data.business_tz()
FLASH = "reports_flash"


st.title("Reports")
st.caption(
    "The weekly digest: Monday to Sunday in the business time zone, built once the week is over."
)
actions.show_flash(FLASH)
schedule = data.read_or_stop(read_schedule)
if schedule is None:
    st.info(
        "No digest schedule yet: an admin sets the **digest** setting on the Admin page "
        '(e.g. `{"channel_ids": [1], "weekday": "monday", "hour": 8}`) to send it to channels. '
        "Digests are built every week either way."
    )
else:
    st.caption(
        f"Sent every {WEEKDAYS[schedule.weekday].capitalize()} at {schedule.hour:02d}:00 to "
        f"{len(schedule.channel_ids)} channel(s)."
    )

if auth.has_role(Role.ADMIN):
    now = clock.now()
    local = now.astimezone(tz).date()
    last_week = local - timedelta(days=local.weekday() + 7)

    def _build(conn: Connection) -> bool:
        made = store_digest(conn, week_start=last_week, tz=tz, now=now, channel_ids=())
        if made:
            record_audit(
                conn, actor=user.username, action="digest.build", target=str(last_week), now=now
            )
        return made

    if st.button(f"Build the digest of the week of {last_week:%-d %B} now"):
        actions.run(
            FLASH,
            _build,
            done=lambda made: "Built." if made else "That week's digest exists already.",
            refused=(ValueError,),
        )

kept: list[dict[str, Any]] = data.read_or_stop(list_digests)
if not kept:
    st.info("No digest yet: the first is built after the first complete week.")
    st.stop()

labels = {
    d["week_start"]: f"{d['week_start']:%-d %b} – {d['week_start'] + timedelta(days=6):%-d %b %Y}"
    for d in kept
}
asked = st.query_params.get("week")
weeks = list(labels)
index = 0
if asked:
    try:
        index = weeks.index(date.fromisoformat(asked))
    except ValueError:
        index = 0
week = st.selectbox("Week", weeks, index=index, format_func=labels.__getitem__)
st.query_params["week"] = week.isoformat()
digest = next(d for d in kept if d["week_start"] == week)
figures = digest["figures"]

st.download_button(
    "Download (Markdown)",
    digest["markdown"],
    file_name=f"digest-{week.isoformat()}.md",
    mime="text/markdown",
)

inc = figures["incidents"]
perf = figures["saturday_performance"]
cols = st.columns(4)
cols[0].metric("Incidents", inc["incidents"])
cols[1].metric("Mean time to acknowledge", minutes_text(inc["mtta_minutes"]))
cols[2].metric("Mean time to resolve", minutes_text(inc["mttr_minutes"]))
cols[3].metric("Saturday incidents", inc["saturday"]["incidents"])

st.subheader("Uptime")
if figures["uptime"]:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Check": u["check"],
                    "Uptime": percent_text(u["uptime"], 3),
                    "Runs": f"{int(u['runs']):,}",
                }
                for u in figures["uptime"]
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No health check ran that week.")

st.subheader("Top error groups")
if figures["top_error_groups"]:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Group": f"#{g['id']}",
                    "Type": g["error_type"],
                    "Message": g["message"],
                    "Events": f"{int(g['events']):,}",
                    "Status": (g["status"] or "").capitalize(),
                }
                for g in figures["top_error_groups"]
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No errors that week.")

st.subheader("Business against the week before")
if figures["kpis"]:
    kpi_cols = st.columns(min(4, len(figures["kpis"])))
    for i, k in enumerate(figures["kpis"]):
        shown = k.get("shown") or f"{k['value']:,.2f}"  # digests built before "shown"
        delta = None if k["delta"] is None else f"{k['delta'] * 100:+.1f} %"
        kpi_cols[i % len(kpi_cols)].metric(
            k["label"],
            shown,
            delta,
            delta_color="normal" if k["higher_is_better"] else "inverse",
        )
else:
    st.caption("No business figures that week.")

day, whole = perf["saturday"], perf["week"]
st.subheader(f"Saturday {date.fromisoformat(perf['date']):%-d %B}")
sat_cols = st.columns(3)
sat_cols[0].metric("API requests", f"{int(day['requests'] or 0):,}")
sat_cols[1].metric(
    "p95 on Saturday", ms_text(day["p95_ms"]), help=f"Whole week: {ms_text(whole['p95_ms'])}"
)
sat_cols[2].metric(
    "Errors on Saturday",
    percent_text(day["error_rate"]),
    help=f"Whole week: {percent_text(whole['error_rate'])}",
)
