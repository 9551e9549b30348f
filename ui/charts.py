"""Plotly figures shared by the pages (times shown in the business time zone)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "PLOTLY_CONFIG",
    "RATING_NAMES",
    "REFERENCE_MS",
    "endpoint_trend_figure",
    "latency_figure",
    "readable_time_axis",
    "traffic_figure",
    "vitals_p75_figure",
    "vitals_shares_figure",
]

PLOTLY_CONFIG = {"displayModeBar": False}  # drag to zoom, double-click to reset; no toolbar
REFERENCE_MS = 2000.0  # the 2 s line: slower than this is what users notice and complain about
_LAYOUT = {
    "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
    "height": 320,
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    "hovermode": "x unified",
}
_RATING_COLORS = {"good": "#0cce6b", "needs-improvement": "#ffa400", "poor": "#ff4e42"}
RATING_NAMES = {"good": "Good", "needs-improvement": "Needs improvement", "poor": "Poor"}
_DEVICE_COLORS = {"desktop": "#4c78a8", "mobile": "#f58518", "tablet": "#72b7b2"}
_DAY_MS = 86_400_000


def _local(times: pd.Series, tz: ZoneInfo) -> pd.Series:
    return pd.to_datetime(times, utc=True).dt.tz_convert(tz).dt.tz_localize(None)


def readable_time_axis(fig: go.Figure) -> None:
    """Day ticks as `27 Nov` (not Plotly's American `Nov 27`), hour ticks as `15:00` over
    `2 Dec` (not `Dec 2, 2026`), the hovered time as `Wed 2 Dec 14:05` on the 24-hour clock,
    thousands separators on the values."""
    fig.update_xaxes(
        tickformatstops=[
            {"dtickrange": [None, _DAY_MS], "value": "%H:%M<br>%-d %b"},
            {"dtickrange": [_DAY_MS, None], "value": "%-d %b"},
        ],
        hoverformat="%a %-d %b %H:%M",
    )
    fig.update_yaxes(separatethousands=True)


def _device(name: object) -> str:
    return str(name).capitalize()


def latency_figure(trend: pd.DataFrame, tz: ZoneInfo) -> go.Figure:
    """p50 and p95 per interval with the 2 s reference line."""
    fig = go.Figure()
    x = _local(trend["bucket"], tz)
    for column, name, dash in (("p50", "p50", "solid"), ("p95", "p95", "solid")):
        fig.add_scatter(x=x, y=trend[column], name=name, mode="lines", line={"dash": dash},
                        hovertemplate="%{y:,.0f} ms")  # fmt: skip
    fig.add_hline(
        y=REFERENCE_MS,
        line={"dash": "dash", "color": "#d62728"},
        annotation_text="2 s reference",
        annotation_position="top left",
    )
    fig.update_layout(**_LAYOUT, yaxis_title="ms", title="Response time")
    fig.update_yaxes(rangemode="tozero")
    readable_time_axis(fig)
    return fig


def traffic_figure(trend: pd.DataFrame, interval: timedelta, tz: ZoneInfo) -> go.Figure:
    """Requests per minute (bars) and the 5xx error rate (line, right axis)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = _local(trend["bucket"], tz)
    minutes = interval.total_seconds() / 60
    fig.add_bar(x=x, y=trend["requests"] / minutes, name="Requests/min", marker_color="#9ecae1",
                hovertemplate="%{y:,.1f}/min")  # fmt: skip
    fig.add_scatter(
        x=x,
        y=trend["error_rate"] * 100,
        name="5xx error rate (%)",
        mode="lines",
        line={"color": "#d62728"},
        secondary_y=True,
        hovertemplate="%{y:.2f} %",
    )
    fig.update_layout(**_LAYOUT, title="Traffic and errors", bargap=0.05)
    readable_time_axis(fig)
    fig.update_yaxes(title_text="Requests/min", secondary_y=False)
    fig.update_yaxes(
        title_text="Error rate (%)", secondary_y=True, rangemode="tozero", tickformat=".1f"
    )
    return fig


def endpoint_trend_figure(trend: pd.DataFrame, percentile: str, tz: ZoneInfo) -> go.Figure:
    """One line per endpoint for the chosen percentile, with the 2 s reference line."""
    fig = go.Figure()
    for endpoint, rows in trend.groupby("endpoint", sort=True):
        rows = rows.sort_values("bucket")
        fig.add_scatter(
            x=_local(rows["bucket"], tz), y=rows[percentile], name=str(endpoint), mode="lines",
            hovertemplate="%{y:,.0f} ms",
        )  # fmt: skip
    fig.add_hline(y=REFERENCE_MS, line={"dash": "dash", "color": "#d62728"})
    fig.update_layout(
        **_LAYOUT, yaxis_title=f"{percentile} (ms)", title=f"{percentile} per endpoint"
    )
    fig.update_yaxes(rangemode="tozero")
    readable_time_axis(fig)
    return fig


def vitals_p75_figure(vitals: pd.DataFrame, metric: str, good: float, poor: float) -> go.Figure:
    """p75 of one vital per page, a bar per device, with the good/poor thresholds."""
    rows = vitals[vitals["name"] == metric].sort_values(["page_route", "device_type"])
    fig = go.Figure()
    value = "%{y:.3f}" if metric == "CLS" else "%{y:,.0f} ms"  # CLS is a score
    for device, part in rows.groupby("device_type", sort=True):
        fig.add_bar(
            x=part["page_route"],
            y=part["p75"],
            name=_device(device),
            marker_color=_DEVICE_COLORS.get(str(device), "#9d9d9d"),
            hovertemplate=f"%{{x}}: {value}",
        )
    fig.add_hline(y=good, line={"dash": "dot", "color": _RATING_COLORS["good"]})
    fig.add_hline(y=poor, line={"dash": "dot", "color": _RATING_COLORS["poor"]})
    unit = "" if metric == "CLS" else " (ms)"
    fig.update_layout(**{**_LAYOUT, "hovermode": "closest"}, barmode="group")
    fig.update_layout(title=f"{metric} p75{unit}")
    fig.update_yaxes(separatethousands=True)
    return fig


def vitals_shares_figure(shares: pd.DataFrame, metric: str) -> go.Figure:
    """Stacked Good / Needs improvement / Poor shares of one vital per device."""
    rows = shares[shares["name"] == metric].sort_values("device_type")
    fig = go.Figure()
    for rating, column in (
        ("good", "good_share"),
        ("needs-improvement", "needs_improvement_share"),
        ("poor", "poor_share"),
    ):
        fig.add_bar(
            y=rows["device_type"].map(_device),
            x=rows[column] * 100,
            name=RATING_NAMES[rating],
            orientation="h",
            marker_color=_RATING_COLORS[rating],
            hovertemplate="%{y}: %{x:.1f} %",
        )
    # in the order they stack (Plotly lists a stack's legend last trace first)
    legend = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0, "traceorder": "normal"}
    layout = {**_LAYOUT, "hovermode": "closest", "height": 260, "legend": legend}
    fig.update_layout(**layout, barmode="stack")
    fig.update_layout(title=f"{metric} ratings by device (%)")
    fig.update_xaxes(range=[0, 100])
    return fig
