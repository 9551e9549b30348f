"""Business figures of a user limited to organisations (suppliers' own staff, account managers):
KPI cards, daily trends, events per type and per organisation, for their organisations only.

The Business page reads the daily rollup, which adds up every organisation; this page's figures
are computed from the raw business events by the rollup's own function
(`monitoring_core.business.organisation`), read through `ui.data.read`, which runs a limited
user's reads as the `monitoring_scoped` role under row-level security: the database, not this
page, keeps other organisations out. Users with every organisation use the Business page.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from monitoring_core.business import kpis
from monitoring_core.business.definitions import day_bounds, local_day
from monitoring_core.business.funnels import MAX_STEPS, funnel
from monitoring_core.business.kpis import Period
from monitoring_core.business.organisation import ORGANISATION_TRENDS, figures
from monitoring_core.enums import Role
from ui import charts, data, fmt, organisations, widgets
from ui.business_charts import humanize, money
from ui.business_url import from_url, to_url
from ui.kpi_cards import draw_cards
from ui.partial_days import daily_trend_figure
from ui.tables import table_with_csv

MIN_DAYS = 7  # as on the Business page: daily figures over a shorter range say little
FUNNEL_WINDOW = timedelta(days=7)
DAY_COLUMN = st.column_config.DateColumn(format="ddd D MMM YYYY")

user = organisations.require_limited_user(Role.VIEWER)
tz, now = data.business_tz(), widgets.current_now()
period = kpis.period_of(widgets.current_time_range(), tz)
if period.days < MIN_DAYS:
    period = Period(period.last - timedelta(days=MIN_DAYS - 1), period.last)
complete = kpis.complete_period(period, now, tz)
today = local_day(now, tz)
reaches = period.first <= today <= period.last
orgs = user.organization_ids or ()
n = complete.days


def _change(events: int, previous: int) -> str:
    if not previous:
        return "new" if events else "–"
    return f"{(events - previous) / previous:+.0%}".replace("%", " %")


st.title("Business")
st.caption(
    f"{fmt.md_escape(', '.join(orgs))}: the last {n} complete days, "
    f"{complete.first:%a %-d %b} – {complete.last:%a %-d %b %Y} ({tz.key}), against the {n} "
    "days before" + ("; today so far is drawn dashed" if reaches else "") + ". Computed from "
    "your organisations' own events."
)
view = data.read_or_stop(figures, period=period, now=now, tz=tz)
currency = view.currencies[0] if len(view.currencies) == 1 else None
if len(view.currencies) > 1:
    st.caption("Revenue came in several currencies: one card each, never added up or converted.")
draw_cards(view.cards, n, reaches_today=reaches)

st.subheader("Trends")
offered = [
    name
    for name in ORGANISATION_TRENDS
    if name != "revenue" or len(view.currencies) <= 1  # else one line per currency
] + [f"revenue:{c}" for c in view.currencies if len(view.currencies) > 1]
from_url("org_trend", "kpis", ["events", "dau"], many=True, among=offered)
chosen = st.multiselect("KPIs", offered, key="org_trend", format_func=humanize)
to_url(kpis=chosen)
shown = Period(complete.first, today if reaches else complete.last)
if chosen:
    st.plotly_chart(
        daily_trend_figure(
            [
                {"day": day, "metric": humanize(name), "value": view.series.get(name, {}).get(day)}
                for name in chosen
                for day in shown.each_day()
            ],
            today if reaches else None,
        ),
        config=charts.PLOTLY_CONFIG,
        key="org_trend_chart",
    )

st.subheader("Events by type")
st.caption(f"Every event type of the last {n} complete days against the {n} days before.")
table_with_csv(
    [
        {
            "Event": humanize(r["event_type"]),
            "Events": r["events"],
            f"Previous {n} days": r["previous"],
            "Change": _change(r["events"], r["previous"]),
        }
        for r in view.event_types
    ],
    "organisation_events_by_type",
    columns=["Event", "Events", f"Previous {n} days", "Change"],
)

st.subheader("Funnel")
types = [r["event_type"] for r in view.event_types]
default = [t for t in ("form_started", "form_completed") if t in types]  # their clients' forms
from_url("org_steps", "steps", default, many=True, among=types)
steps = st.multiselect(
    "Steps, in order", types, key="org_steps", format_func=humanize, max_selections=MAX_STEPS
)
to_url(steps=steps)
if len(steps) >= 2:
    start, end = day_bounds(complete.first, complete.last, tz)
    # the Funnels page's own query, under row-level security like every read here
    result = data.read_or_stop(funnel, steps=steps, start=start, end=end, window=FUNNEL_WINDOW)
    table_with_csv(
        [
            {
                "Step": s.step,
                "Event": humanize(s.event_type),
                "People": s.users,
                "Of the first step": s.conversion_rate,
                "Of the step before": s.step_conversion_rate,
            }
            for s in result.steps
        ],
        "organisation_funnel",
        column_config={
            "Of the first step": st.column_config.NumberColumn(format="percent"),
            "Of the step before": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.caption(
        f"People whose first step was in the last {n} complete days, and the steps they took "
        "after it, in order, within 7 days."
    )
else:
    st.caption("Pick two steps or more.")

st.subheader("By organisation")
table_with_csv(
    [
        {
            "Organisation": r["organization_id"],
            "Events": r["events"],
            "People": r["people"],
            "Revenue": ", ".join(money(v, c) for c, v in sorted(r["revenue"].items())) or "–",
        }
        for r in view.organisations
    ],
    "organisation_totals",
    columns=["Organisation", "Events", "People", "Revenue"],
)
st.caption(
    f"The last {n} complete days. People: distinct users with an event; revenue per currency."
    + (f" All revenue is in {currency}." if currency else "")
)
