"""Performance, one section at a time: Endpoints (regressions, every endpoint's latency and
errors, trends) or Web Vitals (`?section=vitals`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core.enums import Role
from monitoring_core.performance import queries
from monitoring_core.performance.vitals import VITAL_THRESHOLDS
from monitoring_core.performance.vitals_read import DIMENSIONS
from ui import auth, charts, data, fmt, url_state, widgets


def _by_device(vitals: pd.DataFrame) -> pd.DataFrame:
    """The rating shares per vital and device, added up from the per-page rows (shares are
    counts over counts: no second read of the rollups for them)."""
    parts = ("good", "needs_improvement", "poor")
    counts = vitals[["name", "device_type", "count"]].assign(
        **{part: vitals[f"{part}_share"] * vitals["count"] for part in parts}
    )
    out = counts.groupby(["name", "device_type"], as_index=False, sort=True).sum()
    return out.assign(**{f"{part}_share": out[part] / out["count"] for part in parts})


auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
tz = data.business_tz()
ms = st.column_config.NumberColumn
NAMES = {"method": "Method", "endpoint": "Endpoint"}


# `7,117`: the browser's thousands separators and no decimals (step 1); numbers still, so the
# columns sort; the unit is in the header
def whole(label: str) -> Any:
    return ms(label, format="localized", step=1)


SECTIONS = {"Endpoints": "endpoints", "Web Vitals": "vitals"}  # label -> ?section=
st.title("Performance")
# One section at a time (`?section=vitals`): the endpoints (regressions, table, trend) or the
# Web Vitals; both at once were 3 Plotly charts and 3 tables to draw at every click (~1 s of
# a phone's browser CPU under load).
section = url_state.select(
    st.segmented_control,
    "Section",
    list(SECTIONS),
    param="section",
    key="perf_section",
    to_url=SECTIONS.__getitem__,
    required=True,
    label_visibility="collapsed",
)


def _endpoints() -> None:
    """Regressions of the last hour, every endpoint's figures, the chosen endpoints' trend."""
    # The independent reads at once (each 0.1-0.3 s over 30 days): the calls below hit.
    data.prefetch((queries.regression_flags, (tr.end, 4)), (queries.endpoint_table, (tr,)))
    st.subheader("Regressions in the last hour")
    flags = data.read_or_stop(queries.regression_flags, tr.end, 4)
    regressed = flags[flags["regressed"]] if not flags.empty else flags
    if regressed.empty:
        st.success(
            "No endpoint is slower than usual: every p95 of the last hour is within 1.5× "
            "of the same hour in the past 4 weeks.",
            icon=":material/check_circle:",
        )
    else:
        st.warning(
            f"{fmt.plural(len(regressed), 'endpoint')} slower than usual: p95 of the last hour "
            "at least 1.5× the same hour of the past 4 weeks.",
            icon=":material/trending_up:",
        )
        st.dataframe(
            regressed[
                [
                    "method",
                    "endpoint",
                    "p95_last_hour",
                    "baseline_p95",
                    "ratio",
                    "requests_last_hour",
                ]
            ],
            hide_index=True,
            column_config={
                **NAMES,
                "p95_last_hour": whole("p95 last hour (ms)"),
                "baseline_p95": whole("Usual p95 (ms)"),
                "ratio": ms("× usual", format="%.1f×"),
                "requests_last_hour": ms("Requests (last hour)", format="localized"),
            },
        )

    st.subheader("Endpoints")
    table = data.read_or_stop(queries.endpoint_table, tr)
    if table.empty:
        st.info("No API timings in this range yet.")
        st.stop()
    st.dataframe(
        height=widgets.table_height(len(table)),
        data=table[
            [
                "method",
                "endpoint",
                "requests",
                "rpm",
                "p50",
                "p95",
                "p99",
                "error_rate",
                "client_errors",
            ]
        ],
        hide_index=True,
        column_config={
            **NAMES,
            "requests": ms("Requests", format="localized"),
            "rpm": ms("Req/min", format="localized", step=0.1),
            "p50": whole("p50 (ms)"),
            "p95": whole("p95 (ms)"),
            "p99": whole("p99 (ms)"),
            "error_rate": ms("5xx rate", format="percent"),
            "client_errors": ms("4xx", format="localized"),
        },
    )

    st.subheader("Latency trend per endpoint")
    # Start with what needs looking at: regressed endpoints, then the busiest ones.
    busiest = table["endpoint"].drop_duplicates().tolist()
    suggested = list(dict.fromkeys([*regressed["endpoint"].tolist(), *busiest]))[:3]
    pick, level = st.columns([4, 1])
    chosen = url_state.multi(  # ?ep=/api/x&ep=/api/y
        pick.multiselect,
        "Endpoints",
        sorted(busiest),
        param="ep",
        default=suggested,
        key="perf_eps",
    )
    percentile = url_state.select(  # ?p=p99
        level.segmented_control, "Percentile", ["p50", "p95", "p99"], param="p", default="p95",
        key="perf_pct", required=True,
    )  # fmt: skip
    if chosen:
        trend = data.read_or_stop(
            queries.endpoint_latency_trend, tr, tuple(chosen), widgets.chart_interval(tr)
        )
        st.plotly_chart(
            charts.endpoint_trend_figure(trend, percentile or "p95", tz),
            config=charts.PLOTLY_CONFIG,
        )


def _vitals() -> None:
    """p75 per page and device, and the rating shares per device, of one Web Vital."""
    st.subheader("Web Vitals (p75)")
    vitals = data.read_or_stop(queries.web_vitals_summary, tr, DIMENSIONS)
    if vitals.empty:
        st.info(
            "No Web Vitals in this range yet. Browsers send them with the `web-vitals` library."
        )
        st.stop()
    by_device = _by_device(vitals)
    names = [name for name in VITAL_THRESHOLDS if name in set(vitals["name"])]
    metric = url_state.select(  # ?vital=INP
        st.segmented_control, "Metric", names, param="vital", key="perf_vital", required=True
    )
    metric = metric or names[0]
    good, poor = VITAL_THRESHOLDS[metric]
    unit = "" if metric == "CLS" else " ms"  # CLS is a score, the others times
    st.caption(
        f"web.dev thresholds for {metric}: good ≤ {good:,g}{unit}, poor > {poor:,g}{unit}; "
        "the 75th percentile is what counts."
    )
    left, right = st.columns([3, 2])
    left.plotly_chart(
        charts.vitals_p75_figure(vitals, metric, good, poor), config=charts.PLOTLY_CONFIG
    )
    right.plotly_chart(charts.vitals_shares_figure(by_device, metric), config=charts.PLOTLY_CONFIG)
    pivot = vitals[vitals["name"] == metric].pivot_table(
        index="page_route", columns="device_type", values="p75", aggfunc="first"
    )
    pivot.index.name = "Page"

    def column(device: object) -> Any:
        label = f"{str(device).capitalize()} p75"
        return ms(label, format="%.3f") if metric == "CLS" else whole(f"{label} (ms)")

    st.dataframe(pivot, column_config={c: column(c) for c in pivot.columns})


if section == "Web Vitals":
    _vitals()
else:
    _endpoints()
