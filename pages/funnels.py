"""Funnels: conversion and drop-off per step, median time to convert, a breakdown (CSV too)."""

from __future__ import annotations

from datetime import timedelta

import plotly.graph_objects as go
import streamlit as st

from monitoring_core.business.definitions import EventType, day_bounds
from monitoring_core.business.funnels import MAX_STEPS, FunnelMode, event_types, funnel
from monitoring_core.business.kpis import Period, period_of
from monitoring_core.enums import Role
from ui import auth, charts, data, fmt, widgets
from ui.tables import table_with_csv

DEFAULT_STEPS = ["signup", "form_created", "form_completed", "subscription_paid"]
BREAKDOWNS = {
    "none": None,
    "user type": "user_type",
    "device": "device",
    "source": "acquisition_source",
}
auth.require_role(Role.VIEWER)
tz = data.get_settings().tz
period = period_of(widgets.current_time_range(), tz)
if period.days < 30:  # funnels need people who had time to convert: at least 30 days of entries
    period = Period(period.last - timedelta(days=29), period.last)
start, end = day_bounds(period.first, period.last, tz)
end = min(end, widgets.current_now())
st.title("Funnels")
st.caption(
    f"Users entering the first step {period.first:%d %b} – {period.last:%d %b %Y} ({tz.key})."
)

seen = data.read_or_stop(event_types, start=start, end=end) or [e.value for e in EventType]
steps = st.multiselect(
    "Steps, in order",
    seen,
    default=[s for s in DEFAULT_STEPS if s in seen],
    max_selections=MAX_STEPS,
    key="funnel_steps",
)
left, middle, right = st.columns(3)
window_days = left.selectbox(
    "Conversion window",
    [1, 3, 7, 14, 30],
    index=3,
    format_func=lambda d: f"{d} days",
    key="funnel_window",
)
mode = middle.segmented_control(
    "Order",
    ["ordered", "strict"],
    default="ordered",
    key="funnel_mode",
    required=True,
    help="strict: each step must be the next funnel event (no other step's event in between)",
)
breakdown_label = right.selectbox("Breakdown", list(BREAKDOWNS), key="funnel_breakdown")
if len(steps) < 2:
    st.info("Pick at least two steps.")
    st.stop()

result = data.read_or_stop(
    funnel,
    steps=tuple(steps),
    start=start,
    end=end,
    window=timedelta(days=window_days),
    mode=FunnelMode(mode or "ordered"),
    breakdown=BREAKDOWNS[breakdown_label],
)
first, last = result.steps[0], result.steps[-1]
a, b, c = st.columns(3)
a.metric("Entered", f"{first.users:,}", border=True)
b.metric("Converted", f"{last.users:,}", f"{last.conversion_rate:.1%} overall", border=True)
median = result.median_seconds_to_convert
c.metric("Median time to convert", "–" if median is None else f"{median / 3600:.1f} h", border=True)

figure = go.Figure(
    go.Funnel(
        y=[f"{s.step}. {s.event_type}" for s in result.steps],
        x=[s.users for s in result.steps],
        textinfo="value+percent initial+percent previous",
    )
)
st.plotly_chart(
    figure.update_layout(height=340, margin={"t": 10, "b": 10}), config=charts.PLOTLY_CONFIG
)
worst = max(result.steps[1:], key=lambda s: s.drop_off_rate)
st.markdown(
    f"Biggest drop-off: **{worst.drop_off_rate:.0%}** of users who reached step {worst.step - 1} "
    f"did not go on to {fmt.md_code(worst.event_type)}."
)
if result.breakdown:
    bars = go.Figure()
    for value, value_steps in result.breakdown.items():
        bars.add_bar(
            name=value,
            x=[s.event_type for s in value_steps],
            y=[s.conversion_rate for s in value_steps],
        )
    bars.update_layout(
        barmode="group", yaxis_tickformat=".0%", height=340, margin={"t": 10, "b": 10}
    )
    st.plotly_chart(bars, config=charts.PLOTLY_CONFIG)
table_with_csv(
    result.rows(),
    "funnel",
    column_config={
        "conversion_rate": st.column_config.NumberColumn("conversion", format="percent"),
        "step_conversion_rate": st.column_config.NumberColumn("from previous", format="percent"),
        "drop_off_rate": st.column_config.NumberColumn("drop-off", format="percent"),
        "median_seconds_from_previous": st.column_config.NumberColumn(
            "median s from previous", format="%.0f"
        ),
    },
)
