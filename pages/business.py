"""Business: KPI cards, then one section at a time (`?section=`): KPIs (trends, anomalies),
Revenue (MRR movements, forecasts), Features (adoption, ramps, segments), Retention and churn
(the cohort grid, organisations at risk). Every table downloadable as CSV; viewers see
everything.

Complete periods only by default: a range of N days is its N last complete business days
(today is not over), compared with the N days before; "Show today so far" adds today, dashed
and named partial, to the charts (never to a value or a delta). The retention grid stops at the
last complete week. Reads come from the daily rollup through one cached call
(ui.business_data), keyed by the rollup's version.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, cast

import plotly.graph_objects as go
import streamlit as st

from monitoring_core.business import kpis
from monitoring_core.business.dashboard import TREND_METRICS
from monitoring_core.business.definitions import day_bounds, local_day
from monitoring_core.business.export import to_csv
from monitoring_core.business.kpis import Period
from monitoring_core.enums import Role
from ui import auth, charts, data, fmt, widgets
from ui.business_charts import (
    bucket_end,
    forecast_figure,
    humanize,
    money,
    mrr_figure,
    retention_figure,
)
from ui.business_data import business_view, cached_extra, last_complete_week_day
from ui.business_url import from_url, to_url
from ui.kpi_cards import draw_cards
from ui.partial_days import daily_trend_figure
from ui.tables import table_with_csv

MIN_DAYS = 7
TOP_FEATURES = 6  # lines in the adoption chart (a legend of 14 is unreadable, and slow)
RETURNING = ["any event", "form_completed", "journey_started", "feature_used"]
SEGMENTS = ["user_type", "device", "plan"]
# One section drawn at a time (`?section=`): all of them at once were ~1.7 s in the browser
# (6 Plotly charts, 4 tables, 9 downloads), most of it creating the charts; the cards stay on top.
SECTIONS = {
    "kpis": "KPIs",
    "revenue": "Revenue",
    "features": "Features",
    "retention": "Retention and churn",
}
_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
DAY_COLUMN = st.column_config.DateColumn(format="ddd D MMM YYYY")
auth.require_role(Role.VIEWER)
tz, now = data.business_tz(), widgets.current_now()
period = kpis.period_of(widgets.current_time_range(), tz)
if period.days < MIN_DAYS:  # business KPIs are daily: a shorter range says little
    period = Period(period.last - timedelta(days=MIN_DAYS - 1), period.last)
complete = kpis.complete_period(period, now, tz)
today = local_day(now, tz)
st.title("Business")
show_today = False
reaches = period.first <= today <= period.last
if reaches:
    from_url("biz_today", "today", False, parse=lambda v: v == "1")
    show_today = st.toggle(
        "Show today so far (partial)",
        key="biz_today",
        help="Today is not over: by default it is left out of every chart and figure. "
        "Switched on, the charts add it dashed and named partial; values and changes still "
        "compare complete days only.",
    )
from_url("biz_tables", "tables", False, parse=lambda v: v == "1")
show_tables = st.toggle(
    "Show the tables under the charts",
    key="biz_tables",
    help="The numbers behind each chart; their CSV downloads are there either way.",
)
to_url(today="1" if show_today else None, tables="1" if show_tables else None)
shown = Period(complete.first, today if show_today else complete.last)
n = complete.days
st.caption(
    f"The last {n} complete days, {complete.first:%a %-d %b} – {complete.last:%a %-d %b %Y} "
    f"({tz.key}), against the {n} days before"
    + ("; today so far is drawn dashed" if show_today else "")
    + ". From the daily rollup, refreshed every 5 minutes."
)

view = business_view(period, shown, now, tz, today)
currency = view.currencies[0] if len(view.currencies) == 1 else None
prefix = _SYMBOLS.get(currency or "", "")


def _chart_table(
    rows: list[dict[str, Any]],
    name: str,
    *,
    columns: list[str] | None = None,
    column_config: dict[str, Any] | None = None,
) -> None:
    """The numbers behind a chart: the table when "Show the tables" is on (tables are the
    page's heaviest part to draw), its CSV download always."""
    if show_tables:
        table_with_csv(rows, name, columns=columns, column_config=column_config)
    else:
        st.download_button(
            "Download CSV",
            to_csv(rows, columns),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"csv_{name}",
            icon=":material/download:",
        )


def _kpi_text(metric: str, value: float) -> str:
    """A KPI value with its unit: rates as percentages, revenue as money, else a count."""
    if metric.endswith("_rate") or metric == "stickiness":
        return fmt.percent(value, 1)
    if metric.startswith("revenue"):
        return money(value, currency)
    return f"{value:,.0f}"


if len(view.currencies) > 1:
    st.caption("Revenue came in several currencies: one card each, never added up or converted.")
draw_cards(view.cards, n, reaches_today=reaches)

unit = f" ({currency})" if currency else ""


def _kpis() -> None:
    """Trends of the chosen KPIs and the days far from usual."""
    st.subheader("Trends")
    from_url("biz_trend", "kpis", ["dau", "wau", "mau"], many=True, among=TREND_METRICS)
    chosen = st.multiselect("KPIs", TREND_METRICS, key="biz_trend", format_func=humanize)
    to_url(kpis=chosen)
    trend_rows = [
        {"day": day, "metric": humanize(name), "value": view.series.get(name, {}).get(day)}
        for name in chosen
        for day in shown.each_day()
    ]
    if chosen:
        st.plotly_chart(
            daily_trend_figure(trend_rows, today if show_today else None),
            config=charts.PLOTLY_CONFIG,
            key="biz_trend_chart",
        )
        wide = [
            {"Day": day, **{humanize(m): view.series.get(m, {}).get(day) for m in chosen}}
            | ({"Partial": "today so far" if day == today else ""} if show_today else {})
            for day in shown.each_day()
        ]
        _chart_table(
            wide,
            "business_trends",
            column_config={"Day": DAY_COLUMN}
            | {
                humanize(m): st.column_config.NumberColumn(
                    format="percent" if m.endswith("_rate") else "localized"
                )
                for m in chosen
            },
        )

    st.subheader("KPI anomalies")
    st.caption(
        "Complete days whose value is far from the same weekday of the 8 weeks before "
        "(robust z-score beyond ±3.5)."
    )
    table_with_csv(
        [
            {
                "Day": f.day,
                "KPI": humanize(f.metric),
                "Value": _kpi_text(f.metric, f.value),
                "Usual": _kpi_text(f.metric, f.expected),
                "Robust z": round(f.z, 1),
                "Direction": "Above usual" if f.direction == "up" else "Below usual",
            }
            for f in view.anomalies
        ],
        "kpi_anomalies",
        columns=["Day", "KPI", "Value", "Usual", "Robust z", "Direction"],
        column_config={
            "Day": DAY_COLUMN,
            "Robust z": st.column_config.NumberColumn(format="%+.1f"),
        },
    )


def _revenue() -> None:
    """MRR movements per period and the 14-day forecasts."""
    st.subheader("MRR movements")
    partial_buckets: set[date] = set()
    for row in view.mrr:
        bucket = cast(date, row["period"])
        if (
            bucket < shown.first
            or bucket_end(bucket, view.grain) - timedelta(days=1) > complete.last
        ):
            partial_buckets.add(bucket)  # cut by the range's start, or not over yet
    # Always drawn (its text varies): an element that comes and goes shifts every element after it,
    # and Streamlit then draws all of them anew (each Plotly chart from scratch).
    st.caption(
        f"Per {view.grain}"
        + (
            f"; faded bars are partial {view.grain}s (cut by the range's edges, or not over yet)"
            if partial_buckets
            else ""
        )
        + ". Gains green, losses (contraction, churn) red, below the line."
    )
    st.plotly_chart(
        mrr_figure(view.mrr, view.grain, partial_buckets, currency), config=charts.PLOTLY_CONFIG
    )
    money_cols = ["mrr_new", "mrr_expansion", "mrr_reactivation", "mrr_contraction", "mrr_churn"]
    _chart_table(
        [
            {
                "Period": row["period"],
                **{f"{humanize(str(k).removeprefix('mrr_'))}{unit}": row[k] for k in money_cols},
                f"Net change{unit}": row["net"],
                f"MRR at the end{unit}": row.get("mrr"),
                "Partial": "partial" if row["period"] in partial_buckets else "",
            }
            for row in view.mrr
        ],
        "mrr_movements",
        column_config={"Period": DAY_COLUMN}
        | {
            f"{name}{unit}": st.column_config.NumberColumn(format="localized")
            for name in [
                "New",
                "Expansion",
                "Reactivation",
                "Contraction",
                "Churn",
                "Net change",
                "MRR at the end",
            ]
        },  # fmt: skip
    )

    st.subheader("Forecast: the next 14 days")
    st.caption(
        "Trend and weekday pattern fitted to the last 8 complete weeks; the shaded band is where "
        "95 % of days are expected to fall."
    )
    forecast_cols = st.columns(2)
    for col, metric in zip(forecast_cols, ("dau", "revenue"), strict=True):
        actual = {
            day: value
            for day, value in view.series.get(metric, {}).items()
            if day <= complete.last and day >= complete.last - timedelta(days=55)
        }
        points = [p.row() for p in view.forecast if p.metric == metric]
        with col:
            st.plotly_chart(
                forecast_figure(
                    metric, actual, points, prefix=prefix if metric == "revenue" else ""
                ),
                config=charts.PLOTLY_CONFIG,
                key=f"biz_forecast_{metric}",
            )
    _chart_table(
        [
            {
                "Day": p.day,
                "KPI": humanize(p.metric),
                "Forecast": p.forecast,
                "Low (95 %)": p.lower,
                "High (95 %)": p.upper,
            }
            for p in view.forecast
        ],
        "forecasts",
        column_config={"Day": DAY_COLUMN}
        | {
            c: st.column_config.NumberColumn(format="localized")
            for c in ("Forecast", "Low (95 %)", "High (95 %)")
        },
    )


def _features() -> None:
    """Feature adoption, new features' ramps and the top features by segment."""
    st.subheader("Feature adoption")
    if view.adoption:
        adoption_fig = go.Figure()
        latest = max(cast(date, r["day"]) for r in view.adoption)
        shares = {
            str(r["feature"]): cast(float, r["share"]) for r in view.adoption if r["day"] == latest
        }
        features = sorted(shares, key=lambda f: -shares[f])[:TOP_FEATURES]
        st.caption(
            f"The {len(features)} most used features of the last week, as a share of weekly active "
            "users; every feature is in the table and its CSV."
        )
        for feature in features:
            rows = [r for r in view.adoption if r["feature"] == feature]
            adoption_fig.add_scatter(
                x=[r["day"] for r in rows],
                y=[r["share"] for r in rows],
                name=humanize(feature),
                mode="lines+markers",
            )
        adoption_fig.update_layout(
            height=300,
            margin={"l": 10, "r": 10, "t": 30, "b": 10},
            yaxis={"tickformat": ".0%", "title": "of weekly active users", "rangemode": "tozero"},
            legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        )
        st.plotly_chart(adoption_fig, config=charts.PLOTLY_CONFIG)
        _chart_table(
            [
                {
                    "Week ending": r["day"],
                    "Feature": humanize(r["feature"]),
                    "Users": r["users"],
                    "Active users": r["active_users"],
                    "Share": r["share"],
                }
                for r in view.adoption
            ],
            "feature_adoption",
            column_config={
                "Share": st.column_config.NumberColumn(format="percent"),
                "Week ending": DAY_COLUMN,
                "Launched": DAY_COLUMN,
            },
        )
    left, right = st.columns(2)
    with left:
        st.markdown("**New features: weekly share since launch**")
        table_with_csv(
            [
                {
                    "Feature": humanize(r["feature"]),
                    "Launched": r["launched"],
                    "Week": r["week"],
                    "Users": r["users"],
                    "Share": r["share"],
                }
                for r in view.ramp
            ],
            "feature_ramp",
            columns=["Feature", "Launched", "Week", "Users", "Share"],
            column_config={
                "Share": st.column_config.NumberColumn(format="percent"),
                "Week ending": DAY_COLUMN,
                "Launched": DAY_COLUMN,
            },
        )
    with right:
        st.markdown("**Top features by segment (the last 7 days)**")
        from_url("biz_segment", "segment", "user_type", among=SEGMENTS)
        segment = st.selectbox("Segment by", SEGMENTS, key="biz_segment", format_func=humanize)
        to_url(segment=segment)
        start, end = day_bounds(complete.first, complete.last, tz)
        top = cached_extra("features_by_segment", today, start=start, end=end, segment=segment)
        table_with_csv(
            [
                {
                    humanize(segment): humanize(r["segment"]),
                    "Rank": r["rank"],
                    "Feature": humanize(r["feature"]),
                    "Users": r["users"],
                    "Share of the segment": r["share"],
                }
                for r in top
            ],
            "features_by_segment",
            column_config={"Share of the segment": st.column_config.NumberColumn(format="percent")},
        )


def _retention() -> None:
    """The weekly retention grid and the organisations at risk of churning."""
    st.subheader("Weekly retention by signup cohort")
    from_url("biz_returning", "returning", "any event", among=RETURNING)
    returning = st.selectbox("Returning on", RETURNING, key="biz_returning", format_func=humanize)
    to_url(returning=None if returning == "any event" else returning)
    last_week_day = last_complete_week_day(today)
    cohorts = (
        view.retention
        if returning == "any event"
        else cached_extra(
            "retention_grid", today, today=last_week_day, tz=tz, returning_event=returning
        )
    )
    st.caption(
        f"Complete weeks only (Monday to Sunday, up to Sunday {last_week_day:%-d %b}): the "
        "current week is left out until it is over. Each row is the people who signed up that "
        "week; week 0 is their signup week."
    )
    grid = [
        {"cohort": c.week, "size": c.size}
        | {f"week_{i}": round(share, 4) for i, share in enumerate(c.shares)}
        for c in cohorts
    ]
    if grid:
        st.plotly_chart(retention_figure(grid), config=charts.PLOTLY_CONFIG)
        _chart_table(
            grid,
            "retention",
            column_config={
                "cohort": st.column_config.DateColumn("Signup week", format="ddd D MMM YYYY"),
                "size": st.column_config.NumberColumn("People", format="localized"),
            }
            | {
                w: st.column_config.NumberColumn(f"Week {w[5:]}", format="percent")
                for w in grid[0]
                if w.startswith("week_")
            },
        )

    st.subheader("Organizations at risk of churning")
    st.caption(
        "Score 0–100: activity decline (up to 40), days since a key action (35), failed payments (25)."
    )
    table_with_csv(
        [
            {
                "Organization": r["organization_id"],
                "Score": r["score"],
                "Level": humanize(r["level"]),
                f"MRR{unit}": r["mrr"],
                "Reasons": r["reasons"],
            }
            for r in view.churn
        ],
        "churn_risk",
        columns=["Organization", "Score", "Level", f"MRR{unit}", "Reasons"],
        column_config={
            "Score": st.column_config.ProgressColumn(min_value=0, max_value=100, format="%.0f"),
            f"MRR{unit}": st.column_config.NumberColumn(format="localized"),
        },
    )


from_url("biz_section", "section", "kpis", among=list(SECTIONS))
section = st.segmented_control(
    "Section",
    list(SECTIONS),
    key="biz_section",
    format_func=SECTIONS.__getitem__,
    required=True,
    label_visibility="collapsed",
)
to_url(section=None if section == "kpis" else section)
{"kpis": _kpis, "revenue": _revenue, "features": _features, "retention": _retention}[
    section or "kpis"
]()
