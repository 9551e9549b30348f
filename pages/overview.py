"""Overview: is the platform healthy right now, and how has the chosen range gone?"""

from __future__ import annotations

import streamlit as st

from monitoring_core.alerts.queries import active_counts
from monitoring_core.alerts.store import list_active_alerts
from monitoring_core.enums import Role
from monitoring_core.flows.overall_health import read_overall_health
from monitoring_core.health import queries as health_queries
from monitoring_core.incidents import response_figures
from monitoring_core.performance import queries
from ui import auth, charts, data, fmt, widgets
from ui import oncall as oncall_ui

auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
tz = data.business_tz()
now = widgets.current_now()
summary = data.read_or_stop(queries.overview_summary, tr)
before = data.read_or_stop(queries.overview_summary, tr.previous())
if (before["requests"] or 0) < 0.1 * (summary["requests"] or 0):
    # The previous range holds far less data (before monitoring started, or dropped by
    # retention): a change such as "+2,720,019 %" would mean nothing, so show none.
    before = {key: None for key in before}

overall = data.read_or_stop(read_overall_health, tr)

st.title("Overview")
st.markdown(
    f"Overall health: {widgets.status_badge(overall['status'])} &nbsp; "
    f"{fmt.count(summary['requests'])} requests in the range "
    f"({fmt.when(tr.start, tz, now)} – {fmt.when(tr.end, tz, now)}, {tz.key})"
)
n_reasons = len(overall["reasons"])
with st.expander(
    f"Why: {n_reasons} reason{'' if n_reasons == 1 else 's'}", expanded=bool(n_reasons)
):
    # Plain text, not markdown: reasons carry check, alert and incident names.
    st.text(
        "\n".join(f"{fmt.label(r['level'])}: {r['message']}" for r in overall["reasons"]) or "None"
    )
    st.caption(
        "Worst of: API timings, health checks (a wedding-critical one down is critical), "
        "firing critical/high alerts and open SEV1/SEV2 incidents."
    )
oncall_ui.on_call_block(now, tz)


def _change(current: float | None, then: float | None) -> str | None:
    if current is None or then is None or then == 0:
        return None
    return f"{(current - then) / then * 100:+.0f} %"


cards = st.columns(5)
with cards[0]:
    widgets.kpi_card(
        "Request rate",
        fmt.per_minute(summary["requests_per_min"]),
        delta=_change(summary["requests_per_min"], before["requests_per_min"]),
        delta_color="off",
        help="Requests per minute over the range; change against the previous range.",
    )
with cards[1]:
    widgets.kpi_card(
        "Error rate (5xx)",
        fmt.percent(summary["error_rate"]),
        delta=_change(summary["error_rate"], before["error_rate"]),
        delta_color="inverse",
        help="Share of responses with status 500 or above.",
    )
with cards[2]:
    widgets.kpi_card("p50 latency", fmt.milliseconds(summary["p50_ms"]))
with cards[3]:
    widgets.kpi_card(
        "p95 latency",
        fmt.milliseconds(summary["p95_ms"]),
        delta=_change(summary["p95_ms"], before["p95_ms"]),
        delta_color="inverse",
    )
with cards[4]:
    widgets.kpi_card("p99 latency", fmt.milliseconds(summary["p99_ms"]))

# ── Cards from the other domains, one column each (they read through data.read too):
# ── health checks (health), open incidents (incidents), active alerts (alerting).
health_col, incidents_col, alerts_col = st.columns(3)
health = data.read_or_stop(health_queries.health_overview, tr.end)
if health["total"]:
    down = [p["check_name"] for p in health["problems"] if p["status"] == "critical"]
    warning = health["by_status"]["warning"]
    with health_col:
        widgets.kpi_card(
            "Health checks",
            f"{health['by_status']['healthy']} / {health['total']} healthy",
            delta=f"{len(down)} down" if down else (f"{warning} warning" if warning else None),
            delta_color="inverse",
            help="Enabled checks by status (Health page for details). Down: "
            + (fmt.md_escape(", ".join(down)) or "none"),
        )

incident_card = data.read_or_stop(response_figures.overview_card, now=tr.end)
with incidents_col:
    widgets.kpi_card(
        "Open incidents",
        f"{incident_card['open']} open ({incident_card['open_sev1']} SEV1)",
        delta=" · ".join(
            f"{name} {fmt.duration(incident_card[key] * 60)}"
            for name, key in (("MTTA", "mtta_minutes_30d"), ("MTTR", "mttr_minutes_30d"))
            if incident_card[key] is not None
        )
        or None,
        delta_color="off",
        help="Open, investigating or mitigating incidents; MTTA/MTTR over the last 30 days "
        "(Incidents page for details).",
    )

counts = active_counts(data.read_or_stop(list_active_alerts))
critical = counts["critical_firing"]
with alerts_col:
    widgets.kpi_card(
        "Active alerts",
        f"{counts['firing']} firing",
        delta=f"{critical} critical"
        if critical
        else f"{counts['pending']} pending · {counts['acknowledged']} acked · "
        f"{counts['no_data']} no data",
        delta_color="inverse" if critical else "off",
        help="Alert instances firing now; pending, acknowledged and suppressed ones are counted "
        "apart, and rules with no data apart again (Alerts page for details).",
    )

interval = widgets.chart_interval(tr)
trend = data.read_or_stop(queries.latency_trend, tr, interval)
if trend.empty:
    st.info("No API timings in this range yet. Send some to `POST /api/monitoring/performance`.")
else:
    left, right = st.columns(2)
    left.plotly_chart(charts.latency_figure(trend, tz), config=charts.PLOTLY_CONFIG)
    right.plotly_chart(charts.traffic_figure(trend, interval, tz), config=charts.PLOTLY_CONFIG)

st.subheader("Slowest endpoints (p95)")
slow = data.read_or_stop(queries.top_slow_endpoints, tr, 10)
if slow.empty:
    st.caption("No endpoint has enough requests in this range.")
else:
    number = st.column_config.NumberColumn
    st.dataframe(
        slow[["method", "endpoint", "requests", "p50", "p95", "p99", "error_rate"]],
        hide_index=True,
        column_config={
            "method": "Method",
            "endpoint": "Endpoint",
            "requests": number("Requests", format="localized"),
            # `7,117`: localized with no decimals (step 1), numbers still, so the columns sort
            "p50": number("p50 (ms)", format="localized", step=1),
            "p95": number("p95 (ms)", format="localized", step=1),
            "p99": number("p99 (ms)", format="localized", step=1),
            "error_rate": number("5xx rate", format="percent"),
        },
    )
