"""Funnels: conversion and drop-off per step in order, strict order or any order, a filter on
the first step, conversion over time, time to convert, and the people who dropped off at a
step (CSV too). Every selection is in the URL, so a link opens the same funnel."""

from __future__ import annotations

from datetime import date, timedelta

import plotly.graph_objects as go
import streamlit as st

from monitoring_core.business.definitions import EventType, day_bounds
from monitoring_core.business.funnels import (
    MAX_PEOPLE,
    MAX_STEPS,
    TOTAL,
    FunnelFilter,
    FunnelMode,
    event_types,
    funnel,
    funnel_people,
    property_values,
)
from monitoring_core.business.kpis import Period, period_of
from monitoring_core.enums import Role
from ui import auth, charts, data, fmt, url_state, widgets
from ui.business_charts import (
    bucket_end,
    duration_words,
    funnel_trend_figure,
    humanize,
    local_naive,
    time_to_convert_figure,
)
from ui.business_url import from_url, to_url
from ui.tables import table_with_csv

DEFAULT_STEPS = ["signup", "form_created", "form_completed", "subscription_paid"]
PROPERTIES = {"none": None, "user type": "user_type", "device": "device",
              "source": "acquisition_source"}  # fmt: skip
MODES = {
    FunnelMode.ORDERED.value: "In order",
    FunnelMode.STRICT.value: "Strict order",
    FunnelMode.ANY_ORDER.value: "Any order",
}
WINDOWS = [1, 3, 7, 14, 30]
auth.require_role(Role.VIEWER)
tz, now = data.business_tz(), widgets.current_now()
period = period_of(widgets.current_time_range(), tz)
if period.days < 30:  # funnels need people who had time to convert: at least 30 days of entries
    period = Period(period.last - timedelta(days=29), period.last)
start, end = day_bounds(period.first, period.last, tz)
end = min(end, now)
st.title("Funnels")

seen = data.read_or_stop(event_types, start=start, end=end) or [e.value for e in EventType]
from_url("funnel_steps", "steps", [s for s in DEFAULT_STEPS if s in seen], many=True, among=seen)
steps = st.multiselect(
    "Steps, in order",
    seen,
    max_selections=MAX_STEPS,
    key="funnel_steps",
    format_func=humanize,
)
left, middle, right = st.columns(3)
from_url("funnel_window", "window", 14, parse=int, among=WINDOWS)
window_days = left.selectbox(
    "Conversion window",
    WINDOWS,
    format_func=lambda d: f"{d} day{'' if d == 1 else 's'}",
    key="funnel_window",
)
from_url("funnel_mode", "mode", FunnelMode.ORDERED.value, among=list(MODES))
mode = FunnelMode(
    middle.segmented_control(
        "Order",
        list(MODES),
        format_func=MODES.__getitem__,
        key="funnel_mode",
        required=True,
        help="In order: each step after the one before, other events allowed in between. "
        "Strict: each step must be the very next of the funnel's events. Any order: the steps "
        "in any order, all within the window; step n then means “any n of the steps”.",
    )
    or FunnelMode.ORDERED.value
)
from_url("funnel_breakdown", "breakdown", "none", among=list(PROPERTIES))
breakdown_label = right.selectbox(
    "Breakdown (first step's property)",
    list(PROPERTIES),
    key="funnel_breakdown",
    format_func=str.capitalize,
)
if len(steps) < 2:
    to_url(steps=steps)
    st.info("Pick at least two steps.")
    st.stop()

first_step = humanize(steps[0])
filter_left, filter_right = st.columns([1, 2])
from_url("funnel_where", "where", "none", among=list(PROPERTIES))
where_label = filter_left.selectbox(
    f"Only people whose “{first_step}” has",
    list(PROPERTIES),
    key="funnel_where",
    format_func=str.capitalize,
)
where_prop = PROPERTIES[where_label]
where: FunnelFilter | None = None
values: list[str] = []
if where_prop:
    choices = data.read_or_stop(
        property_values, event_type=steps[0], prop=where_prop, start=start, end=end
    )
    from_url("funnel_where_values", "is", choices[:1], many=True, among=choices)
    values = filter_right.multiselect(
        f"{humanize(where_prop)} is", choices, key="funnel_where_values", format_func=humanize
    )
    if values:
        where = FunnelFilter(where_prop, tuple(values))
grain = "week" if period.days > 45 else "day"
to_url(
    steps=steps,
    window=window_days,
    mode=mode.value,
    breakdown=breakdown_label,
    where=where_label,
    is_=values if where_prop else None,
)
st.caption(
    f"People whose first “{first_step}” falls between {period.first:%-d %b} and "
    f"{period.last:%-d %b %Y} ({tz.key})"
    + (
        f" and has {humanize(where_prop).lower()} {', '.join(map(humanize, values))}"
        if where
        else ""
    )
    + f", and how far they got within {window_days} day{'' if window_days == 1 else 's'}."
)

result = data.read_or_stop(
    funnel,
    steps=tuple(steps),
    start=start,
    end=end,
    window=timedelta(days=window_days),
    mode=mode,
    breakdown=PROPERTIES[breakdown_label],
    where=where,
    grain=grain,
    tz=tz,
)
first, last = result.steps[0], result.steps[-1]
names = [humanize(s.event_type) for s in result.steps]
a, b, c, d = st.columns(4)
a.metric(
    "Entered", f"{first.users:,}", help=f"People who did “{names[0]}” in the range", border=True
)
b.metric("Converted", f"{last.users:,}", help=f"People who reached “{names[-1]}”", border=True)
c.metric("Overall conversion", fmt.percent(last.conversion_rate, 1), border=True)
d.metric(
    "Median time to convert",
    duration_words(result.median_seconds_to_convert),
    help="From the first step to the last, for the people who converted",
    border=True,
)

figure = go.Figure(
    go.Funnel(
        y=[f"{s.step}. {n}" for s, n in zip(result.steps, names, strict=True)],
        x=[s.users for s in result.steps],
        textinfo="value+percent initial+percent previous",
        marker={"color": "#1f77b4"},
    )
)
st.plotly_chart(
    figure.update_layout(height=340, margin={"t": 10, "b": 10, "l": 10, "r": 10}),
    config=charts.PLOTLY_CONFIG,
)
if first.users:
    worst = max(result.steps[1:], key=lambda s: s.drop_off_rate)
    st.markdown(
        f"Biggest drop-off: **{fmt.percent(worst.drop_off_rate, 0)}** of the people who reached "
        f"step {worst.step - 1} did not go on to step {worst.step}, "
        f"{fmt.md_escape(names[worst.step - 1])}."
    )
else:  # the same number of elements either way: nothing after this is drawn anew
    worst = result.steps[1]
    st.markdown("Nobody entered the funnel in this range.")
if result.breakdown:
    bars = go.Figure()
    for value, value_steps in result.breakdown.items():
        bars.add_bar(name=humanize(value), x=names, y=[s.conversion_rate for s in value_steps])
    bars.update_layout(
        barmode="group",
        yaxis={"tickformat": ".0%", "title": "of those who entered"},
        height=340,
        margin={"t": 10, "b": 10, "l": 10, "r": 10},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
    )
    st.plotly_chart(bars, config=charts.PLOTLY_CONFIG)

table_with_csv(
    [
        {
            "Breakdown": "All" if row["breakdown"] == TOTAL else humanize(row["breakdown"]),
            "Step": row["step"],
            "Event": humanize(row["event_type"]),
            "People": row["users"],
            "Conversion": row["conversion_rate"],
            "From previous step": row["step_conversion_rate"],
            "Dropped off": row["drop_off"],
            "Drop-off": row["drop_off_rate"],
            "Median time from previous step": duration_words(row["median_seconds_from_previous"])
            if row["step"] > 1
            else "",
        }
        for row in result.rows()
    ],
    "funnel",
    column_config={
        "Conversion": st.column_config.NumberColumn(format="percent"),
        "From previous step": st.column_config.NumberColumn(format="percent"),
        "Drop-off": st.column_config.NumberColumn(format="percent"),
        "People": st.column_config.NumberColumn(format="localized"),
        "Dropped off": st.column_config.NumberColumn(format="localized"),
    },
)

# Only the open tab runs (its chart, table and read): all three drawn on every run cost each
# click two Plotly charts, two tables and the people query. A link naming a dropped-off step
# (`?drop=3`) opens the people.
trend_tab, time_tab, people_tab = st.tabs(
    ["Conversion over time", "Time to convert", "People who dropped off"],
    key="funnel_tab",
    on_change="rerun",
    default="People who dropped off" if url_state.get("drop") else None,
)
if trend_tab.open:
    with trend_tab:
        # A period is complete once it is over and its last entrant's window has passed too; the
        # first one is cut when the range starts after its first day.
        settled = now - timedelta(days=window_days)

        def _status(first_day: date) -> str:
            if first_day < period.first:
                return "cut"
            last_day = bucket_end(first_day, grain) - timedelta(days=1)
            return "complete" if day_bounds(first_day, last_day, tz)[1] <= settled else "open"

        points = [
            {
                "period": p.period,
                "entered": p.entered,
                "converted": p.converted,
                "conversion_rate": p.conversion_rate,
                "status": _status(p.period),
            }
            for p in result.trend
        ]
        statuses = {
            "complete": "Complete",
            "open": "Still converting",
            "cut": f"Partial (the range starts mid-{grain})",
        }
        if points:
            st.caption(
                f"Of the people entering each {grain}, the share who reached “{names[-1]}”. "
                f"Dashed: {grain}s whose people may still convert (the {window_days}-day window "
                f"has not passed for all of them, or the {grain} is not over); grey marker: a "
                f"{grain} the range cuts."
            )
            st.plotly_chart(funnel_trend_figure(points, grain), config=charts.PLOTLY_CONFIG)
            table_with_csv(
                [
                    {
                        f"Entered ({grain})": p["period"],
                        "Entered": p["entered"],
                        "Converted": p["converted"],
                        "Conversion": p["conversion_rate"],
                        "Complete": statuses[str(p["status"])],
                    }
                    for p in points
                ],
                "funnel_trend",
                column_config={
                    "Conversion": st.column_config.NumberColumn(format="percent"),
                    f"Entered ({grain})": st.column_config.DateColumn(format="ddd D MMM YYYY"),
                },
            )
        else:
            st.info("Nobody entered the funnel in this range.")
if time_tab.open:
    with time_tab:
        if result.time_to_convert:
            st.caption(
                f"The {last.users:,} people who converted, by the time from “{names[0]}” to "
                f"“{names[-1]}” (median {duration_words(result.median_seconds_to_convert)})."
            )
            st.plotly_chart(
                time_to_convert_figure(result.time_to_convert), config=charts.PLOTLY_CONFIG
            )
        else:
            st.info("Nobody converted in this range.")
if people_tab.open:
    with people_tab:
        droppable = [s for s in result.steps[1:]]
        from_url("funnel_drop", "drop", worst.step, parse=int, among=[s.step for s in droppable])
        chosen = st.selectbox(
            "Dropped off before",
            [s.step for s in droppable],
            format_func=lambda n: (
                f"step {n}, {names[n - 1]} ({result.steps[n - 1].drop_off:,} people)"
            ),
            key="funnel_drop",
        )
        to_url(drop=chosen)
        total, people = data.read_or_stop(
            funnel_people,
            steps=tuple(steps),
            start=start,
            end=end,
            window=timedelta(days=window_days),
            dropped_at=chosen,
            mode=mode,
            where=where,
        )
        shown = f"the first {len(people):,} (by entry time)" if total > len(people) else "all"
        st.caption(
            f"{total:,} people reached “{names[chosen - 2]}” but not “{names[chosen - 1]}” "
            f"within {window_days} days; {shown} below"
            + (f" (at most {MAX_PEOPLE:,})" if total > len(people) else "")
            + f". Times in {tz.key}."
        )
        table_with_csv(
            [
                {
                    "User": p["user_id"],
                    "Organization": p["organization_id"],
                    "Entered": local_naive(p["entered_at"], tz),
                    "Last step": humanize(p["last_step"]),
                    "Last step at": local_naive(p["last_step_at"], tz),
                }
                for p in people
            ],
            f"funnel_dropped_before_step_{chosen}",
            columns=["User", "Organization", "Entered", "Last step", "Last step at"],
            column_config={
                "Entered": st.column_config.DatetimeColumn(format="ddd D MMM YYYY, HH:mm"),
                "Last step at": st.column_config.DatetimeColumn(format="ddd D MMM YYYY, HH:mm"),
            },
        )
