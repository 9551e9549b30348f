"""Figures and words for the Business and Funnels pages: MRR movements in the usual colours,
forecasts drawn in date order with their band, the retention grid of complete weeks, funnel
conversion over time with incomplete periods marked, and time-to-convert bins.

Every figure is built from plain rows (cacheable) and kept light: no hover templates per
point, no subplots, so Plotly's serialisation stays a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from ui import fmt
from ui.charts import readable_time_axis

__all__ = [
    "MOVEMENTS",
    "duration_words",
    "forecast_figure",
    "funnel_trend_figure",
    "humanize",
    "money",
    "mrr_figure",
    "retention_figure",
    "time_to_convert_figure",
]

# (rollup name, legend name, colour): gains green, losses red, as ChartMogul and Baremetrics
# draw them.
MOVEMENTS = (
    ("mrr_new", "New", "#2ca02c"),
    ("mrr_expansion", "Expansion", "#98df8a"),
    ("mrr_reactivation", "Reactivation", "#1a9850"),
    ("mrr_contraction", "Contraction", "#ff9896"),
    ("mrr_churn", "Churn", "#d62728"),
)
NET_COLOR = "#333333"
ACTUAL_COLOR = "#1f77b4"
FORECAST_COLOR = "#ff7f0e"
PARTIAL_COLOR = "#9d9d9d"
_MARGIN = {"l": 10, "r": 10, "t": 30, "b": 10}
_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1}
_NAMES = {
    "dau": "Daily active users",
    "wau": "Weekly active users",
    "mau": "Monthly active users",
    "mrr": "MRR",
    "form_completion_rate": "Form completion rate",
    "journey_completion_rate": "Journey completion rate",
    "user_type": "User type",
    "acquisition_source": "Source",
    "ai_writer": "AI writer",
}


def humanize(name: object) -> str:
    """`form_completed` → "Form completed", `dau` → "Daily active users" (known names first,
    then `ui.fmt.label`), first letter capitalised."""
    text = str(name)
    if text in _NAMES:
        return _NAMES[text]
    labelled = fmt.label(text)
    return labelled[:1].upper() + labelled[1:]


def money(value: float | None, currency: str | None) -> str:
    """`£12,340`, `€1.2k` is not used: whole units with separators; `12,340 USD` for other codes."""
    if value is None:
        return "–"
    symbol = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency or "")
    if symbol:
        return f"-{symbol}{abs(value):,.0f}" if value < 0 else f"{symbol}{value:,.0f}"
    return f"{value:,.0f} {currency}" if currency else f"{value:,.0f}"


def duration_words(seconds: float | None) -> str:
    """`45 s`, `12 min`, `3 h 20 min`, `2 d 4 h` (`ui.fmt.duration`; "–" for nothing)."""
    return "–" if seconds is None else fmt.duration(seconds)


def _bucket_label(start: date, grain: str) -> str:
    if grain == "month":
        return f"{start:%b %Y}"
    if grain == "week":
        return f"week of {start:%-d %b}"
    return f"{start:%a %-d %b}"


def mrr_figure(
    rows: Sequence[Mapping[str, Any]], grain: str, partial: set[date], currency: str | None
) -> go.Figure:
    """Stacked movements per bucket (losses below zero) and the net change as markers;
    partial buckets (`partial`: their starts) faded and named so."""
    x = [
        _bucket_label(r["period"], grain) + (" (partial)" if r["period"] in partial else "")
        for r in rows
    ]
    opacity = [0.4 if r["period"] in partial else 1.0 for r in rows]
    fig = go.Figure()
    for key, name, color in MOVEMENTS:
        fig.add_bar(
            x=x,
            y=[r[key] for r in rows],
            name=name,
            marker={"color": color, "opacity": opacity},
        )
    fig.add_scatter(
        x=x,
        y=[r["net"] for r in rows],
        name="Net change",
        mode="markers",
        marker={"color": NET_COLOR, "symbol": "diamond", "size": 9},
    )
    prefix = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency or "", "")
    fig.update_layout(
        barmode="relative",
        height=330,
        margin=_MARGIN,
        legend=_LEGEND,
        hovermode="x unified",
        yaxis={"tickprefix": prefix, "tickformat": ",.0f", "title": "MRR change"},
        xaxis={"type": "category"},
    )
    return fig


def forecast_figure(
    metric: str,
    actual: Mapping[date, float],
    forecast: Sequence[Mapping[str, Any]],
    *,
    prefix: str = "",
) -> go.Figure:
    """The actual series in date order, then the forecast with its 95 % band (the band's
    lower edge drawn first, the upper filled down to it), joined to the last actual day."""
    days = sorted(actual)
    fig = go.Figure()
    points = sorted(forecast, key=lambda p: p["day"])
    if points:
        band_x = [p["day"] for p in points]
        fig.add_scatter(
            x=band_x,
            y=[p["lower"] for p in points],
            mode="lines",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
        )
        fig.add_scatter(
            x=band_x,
            y=[p["upper"] for p in points],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(255, 127, 14, 0.18)",
            name="95 % band",
            hoverinfo="skip",
        )
    fig.add_scatter(
        x=days,
        y=[actual[d] for d in days],
        name="Actual",
        mode="lines",
        line={"color": ACTUAL_COLOR},
    )
    if points:
        joined = ([days[-1]] if days else []) + [p["day"] for p in points]
        values = ([actual[days[-1]]] if days else []) + [p["forecast"] for p in points]
        fig.add_scatter(
            x=joined,
            y=values,
            name="Forecast",
            mode="lines",
            line={"color": FORECAST_COLOR, "dash": "dash"},
        )
    fig.update_layout(
        title=humanize(metric),
        height=300,
        margin=_MARGIN,
        legend=_LEGEND,
        hovermode="x unified",
        yaxis={"tickprefix": prefix, "tickformat": ",.0f", "rangemode": "tozero"},
    )
    readable_time_axis(fig)
    return fig


def retention_figure(grid: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Cohort × weeks-since-signup shares as a heat map (empty cells are weeks not yet over)."""
    weeks = [c for c in grid[0] if str(c).startswith("week_")] if grid else []
    heat = go.Heatmap(
        z=[[row.get(w) for w in weeks] for row in grid],
        x=[f"Week {w.removeprefix('week_')}" for w in weeks],
        y=[f"{r['cohort']:%-d %b} ({r['size']:,})" for r in grid],
        colorscale="Blues",
        zmin=0,
        zmax=1,
        texttemplate="%{z:.0%}",
        hovertemplate="%{y}, %{x}: %{z:.1%}<extra></extra>",
        colorbar={"tickformat": ".0%"},
    )
    return go.Figure(heat).update_layout(
        height=80 + 30 * max(len(grid), 1), margin=_MARGIN, yaxis={"autorange": "reversed"}
    )


def funnel_trend_figure(points: Sequence[Mapping[str, Any]], grain: str) -> go.Figure:
    """Conversion per entry period (`status` complete, open or cut): complete periods solid,
    the periods whose people may still convert (or that are not over) dashed grey, a period
    the range cuts at its start as a hollow grey marker; each named so."""
    fig = go.Figure()
    done = [p for p in points if p["status"] == "complete"]
    open_ = [p for p in points if p["status"] == "open"]
    cut = [p for p in points if p["status"] == "cut"]
    fig.add_scatter(
        x=[p["period"] for p in done],
        y=[p["conversion_rate"] for p in done],
        name="Conversion",
        mode="lines+markers",
        line={"color": ACTUAL_COLOR},
        customdata=[[p["entered"], p["converted"]] for p in done],
        hovertemplate="%{y:.1%} (%{customdata[1]:,} of %{customdata[0]:,})<extra></extra>",
    )
    if open_:
        tail = done[-1:] + open_
        fig.add_scatter(
            x=[p["period"] for p in tail],
            y=[p["conversion_rate"] for p in tail],
            name="Still converting (window not over)",
            mode="lines+markers",
            line={"color": PARTIAL_COLOR, "dash": "dash"},
            customdata=[[p["entered"], p["converted"]] for p in tail],
            hovertemplate="%{y:.1%} so far (%{customdata[1]:,} of %{customdata[0]:,})"
            "<extra></extra>",
        )
    if cut:
        fig.add_scatter(
            x=[p["period"] for p in cut],
            y=[p["conversion_rate"] for p in cut],
            name=f"Partial {grain} (range edge)",
            mode="markers",
            marker={"color": PARTIAL_COLOR, "symbol": "circle-open", "size": 9},
            customdata=[[p["entered"], p["converted"]] for p in cut],
            hovertemplate="%{y:.1%} (%{customdata[1]:,} of %{customdata[0]:,})<extra></extra>",
        )
    tick = "%d %b" if grain != "month" else "%b %Y"
    fig.update_layout(
        height=300,
        margin=_MARGIN,
        legend=_LEGEND,
        yaxis={"tickformat": ".0%", "rangemode": "tozero", "title": "converted"},
        xaxis={"tickformat": tick, "title": f"entered ({grain})"},
    )
    return fig


def time_to_convert_figure(bins: Sequence[tuple[float, float, int]]) -> go.Figure:
    """People who converted, by how long it took (bins named in words)."""
    labels = [f"{duration_words(lo)} – {duration_words(hi)}" if lo else f"< {duration_words(hi)}"
              for lo, hi, _ in bins]  # fmt: skip
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=[n for _, _, n in bins],
            marker={"color": ACTUAL_COLOR},
            hovertemplate="%{x}: %{y:,} people<extra></extra>",
        )
    )
    fig.update_layout(
        height=300,
        margin=_MARGIN,
        xaxis={"type": "category", "title": "time from first to last step"},
        yaxis={"title": "people", "tickformat": ",d"},
    )
    return fig


def local_naive(moment: datetime | None, tz: Any) -> datetime | None:
    """A timestamp in the business time zone without its offset (for tables)."""
    return None if moment is None else moment.astimezone(tz).replace(tzinfo=None)


def bucket_end(start: date, grain: str) -> date:
    """The first day after the bucket starting on `start`."""
    if grain == "month":
        return (start.replace(day=1) + timedelta(days=32)).replace(day=1)
    return start + timedelta(days=7 if grain == "week" else 1)
