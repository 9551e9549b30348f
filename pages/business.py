"""Business: KPI cards, trends, MRR movements, feature adoption, retention, churn risk,
anomalies and forecasts (every table downloadable as CSV; viewers see everything)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from monitoring_core.business import adoption, kpis
from monitoring_core.business.anomalies import kpi_anomalies
from monitoring_core.business.dashboard import TREND_METRICS, churn_risk_rows, movement_grain
from monitoring_core.business.definitions import day_bounds, local_day
from monitoring_core.business.forecast import forecast_kpis
from monitoring_core.business.retention import grid_rows, retention_grid
from monitoring_core.enums import Role
from ui import auth, charts, data, widgets
from ui.partial_days import daily_trend_figure
from ui.tables import table_with_csv

MIN_DAYS = 7
auth.require_role(Role.VIEWER)
tz, now = data.get_settings().tz, widgets.current_now()
period = kpis.period_of(widgets.current_time_range(), tz)
if period.days < MIN_DAYS:  # business KPIs are daily: a shorter range says little
    period = kpis.Period(period.last - timedelta(days=MIN_DAYS - 1), period.last)
complete = kpis.complete_period(period, now, tz)
today = local_day(now, tz)
partial_day = today if period.first <= today <= period.last else None
st.title("Business")
st.caption(
    f"KPI cards: the {complete.days} complete business days {complete.first:%d %b} – "
    f"{complete.last:%d %b %Y} ({tz.key}) against the {complete.days} days before"
    + (", today so far shown apart (partial, dashed in the trends)" if partial_day else "")
    + ". KPIs come from the daily rollup, refreshed every 5 minutes."
)


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


cards = data.read_or_stop(kpis.kpi_cards, period=period, now=now, tz=tz)
if sum(card.name.startswith("revenue:") for card in cards) > 1:
    st.caption("Revenue came in several currencies: one card each, never added up or converted.")
for row_start in range(0, len(cards), 4):
    for col, card in zip(st.columns(4), cards[row_start : row_start + 4], strict=False):
        with col:
            # st.metric draws the sparkline itself (chart_data, complete days only); the delta
            # is against the previous complete period, coloured by whether up is good.
            st.metric(
                card.label,
                _number(card.value, card.fmt),
                delta=None if card.delta is None else f"{card.delta:+.1%}",
                delta_color="normal" if card.higher_is_better else "inverse",
                help=f"Previous {complete.days} days: {_number(card.previous, card.fmt)}"
                + (
                    f"; today so far (partial): {_number(card.today, card.fmt)}"
                    if partial_day
                    else ""
                ),
                chart_data=card.sparkline or None,
                border=True,
            )

st.subheader("Trends")
chosen = st.multiselect("KPIs", TREND_METRICS, default=["dau", "wau", "mau"], key="biz_trend")
trend = data.read_or_stop(kpis.trends, names=tuple(chosen), period=period)
if trend:
    trend_chart = daily_trend_figure(trend, partial_day)
    st.plotly_chart(trend_chart, config=charts.PLOTLY_CONFIG, key="biz_trend_chart")
    table_with_csv(trend, "business_trends")

st.subheader("MRR movements")
moves = data.read_or_stop(kpis.mrr_movements, period=period, grain=movement_grain(period))
figure = go.Figure()
for name in ("mrr_new", "mrr_expansion", "mrr_reactivation", "mrr_contraction", "mrr_churn"):
    figure.add_bar(x=[m["period"] for m in moves], y=[m[name] for m in moves], name=name[4:])
figure.update_layout(barmode="relative", height=320, margin={"t": 10, "b": 10})
st.plotly_chart(figure, config=charts.PLOTLY_CONFIG)
table_with_csv(moves, "mrr_movements")

st.subheader("Feature adoption")
shares = data.read_or_stop(adoption.adoption_shares, period=period, grain="week")
if shares:
    weekly = pd.DataFrame(shares).pivot_table(index="day", columns="feature", values="share")
    st.line_chart(weekly, y_label="share of weekly active users")
    table_with_csv(shares, "feature_adoption")
left, right = st.columns(2)
with left:
    st.markdown("**New features: weekly share since launch**")
    table_with_csv(
        data.read_or_stop(adoption.feature_ramp, today=local_day(now, tz)), "feature_ramp"
    )
with right:
    st.markdown(f"**Top features by segment (last {adoption.SEGMENT_DAYS} days)**")
    segment = st.selectbox("Segment by", ["user_type", "device", "plan"], key="biz_segment")
    start, end = day_bounds(period.first, period.last, tz)
    top = data.read_or_stop(adoption.features_by_segment, start=start, end=end, segment=segment)
    table_with_csv(top, "features_by_segment")

st.subheader("Weekly retention by signup cohort")
returning = st.selectbox(
    "Returning on",
    ["any event", "form_completed", "journey_started", "feature_used"],
    key="biz_returning",
)
event = None if returning == "any event" else returning
grid = grid_rows(
    data.read_or_stop(retention_grid, today=local_day(now, tz), tz=tz, returning_event=event)
)
if grid:
    weeks = [c for c in grid[0] if c.startswith("week_")]
    heat = go.Heatmap(
        z=[[row.get(w) for w in weeks] for row in grid],
        x=weeks,
        y=[str(r["cohort"]) for r in grid],
        colorscale="Blues",
        zmin=0,
        zmax=1,
        texttemplate="%{z:.0%}",
    )
    heatmap = go.Figure(heat).update_layout(height=420, margin={"t": 10, "b": 10})
    st.plotly_chart(heatmap, config=charts.PLOTLY_CONFIG)
    table_with_csv(grid, "retention")

st.subheader("Organizations at risk of churning")
risk = data.read_or_stop(churn_risk_rows, now=now)
st.caption(
    "Score 0–100: activity decline (40), days since a key action (35), failed payments (25)."
)
table_with_csv(risk, "churn_risk")

st.subheader("KPI anomalies")
flags = data.read_or_stop(kpi_anomalies, period=complete)
st.caption("Robust z-score of each complete day against the same weekday of the 8 weeks before.")
table_with_csv([f.row() for f in flags], "kpi_anomalies")

st.subheader("Forecast: the next 14 days")
points = data.read_or_stop(forecast_kpis, last_day=complete.last)
history = data.read_or_stop(
    kpis.daily_series, names=("dau", "revenue"), first=complete.first, last=complete.last
)
for metric in ("dau", "revenue"):
    mine = [p for p in points if p.metric == metric]
    past = history.get(metric, {})
    fig = go.Figure()
    fig.add_scatter(x=list(past), y=list(past.values()), name="actual")
    fig.add_scatter(
        x=[p.day for p in mine], y=[p.upper for p in mine], line={"width": 0}, showlegend=False
    )
    fig.add_scatter(
        x=[p.day for p in mine],
        y=[p.lower for p in mine],
        fill="tonexty",
        line={"width": 0},
        name="95 % band",
    )
    fig.add_scatter(x=[p.day for p in mine], y=[p.forecast for p in mine], name="forecast")
    fig.update_layout(title=metric, height=300, margin={"t": 30, "b": 10})
    st.plotly_chart(fig, config=charts.PLOTLY_CONFIG)
table_with_csv([p.row() for p in points], "forecasts")
