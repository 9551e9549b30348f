"""Daily KPI lines whose last day may be partial: complete days solid, today dashed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import plotly.graph_objects as go

from ui.charts import readable_time_axis

__all__ = ["daily_trend_figure", "split_partial"]

Points = list[tuple[date, float]]


def split_partial(points: Points, partial_day: date | None) -> tuple[Points, Points]:
    """(complete points, dashed tail): the tail joins the last complete day to the partial one
    so the line stays continuous; no tail when no point falls on `partial_day`."""
    complete = [p for p in points if p[0] != partial_day]
    partial = [p for p in points if p[0] == partial_day]
    if not partial:
        return complete, []
    return complete, complete[-1:] + partial


def daily_trend_figure(rows: Iterable[Mapping[str, Any]], partial_day: date | None) -> go.Figure:
    """One line per metric from `trends` rows ({day, metric, value}); `partial_day` dashed."""
    by_metric: dict[str, Points] = defaultdict(list)
    for row in rows:
        if row["value"] is not None:
            by_metric[str(row["metric"])].append((row["day"], float(row["value"])))
    fig = go.Figure()
    for metric, points in by_metric.items():
        complete, tail = split_partial(sorted(points), partial_day)
        fig.add_scatter(
            x=[d for d, _ in complete],
            y=[v for _, v in complete],
            name=metric,
            legendgroup=metric,
            mode="lines",
        )
        if tail:
            fig.add_scatter(
                x=[d for d, _ in tail],
                y=[v for _, v in tail],
                name=f"{metric} (today so far)",
                legendgroup=metric,
                mode="lines+markers",
                line={"dash": "dash"},
            )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    )
    readable_time_axis(fig)
    return fig
