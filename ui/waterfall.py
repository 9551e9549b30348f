"""The Traces page's waterfall: one trace's spans as horizontal bars (offset, duration), in
the tree order `traces.rules.waterfall` gives them; error spans red.

Each span's name is written just above its bar, from the bar's start (from its end for a
span in the trace's second half, so the words stay inside the chart), as Jaeger and Tempo
draw it, not as axis labels: a column of labels as wide as the longest name left a
390-pixel phone a sliver for the bars. The row order is the tree's; a child starts at or
after its parent, so where its name starts shows where it sits.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ui import fmt

__all__ = ["KINDS", "span_label", "waterfall_figure"]

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
ROW_PX = 30  # a bar and the line of text above it


def span_label(row: dict[str, Any]) -> str:
    return f"{row['service']}: {row['name'][:80]}"


def waterfall_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Bars for `rows` (dicts with depth, service, name, status_code, offset_ms, duration_ms,
    kind), the first at the top, each with its name above it."""
    total_ms = max((r["offset_ms"] + r["duration_ms"] for r in rows), default=0.0)
    labels = [span_label(r) for r in rows]
    colors = ["#d62728" if r["status_code"] == 2 else "#1f77b4" for r in rows]
    late = [r["offset_ms"] > total_ms / 2 for r in rows]  # names end where the bar ends
    bars = go.Bar(
        y=[i + 0.2 for i in range(len(rows))],
        x=[max(r["duration_ms"], total_ms / 1000) for r in rows],  # a 0 ms span stays visible
        base=[r["offset_ms"] for r in rows],
        orientation="h",
        width=0.42,
        marker_color=colors,
        text=labels,
        textposition="none",
        customdata=[
            [
                fmt.precise_ms(r["offset_ms"]),
                fmt.precise_ms(r["duration_ms"]),
                KINDS.get(r["kind"], "?"),
            ]
            for r in rows
        ],
        hovertemplate="%{text}<br>starts at +%{customdata[0]}, lasts %{customdata[1]}"
        " (%{customdata[2]})<extra></extra>",
    )
    names = go.Scatter(
        y=[i - 0.22 for i in range(len(rows))],
        x=[
            r["offset_ms"] + (r["duration_ms"] if end else 0)
            for r, end in zip(rows, late, strict=True)
        ],
        mode="text",
        text=labels,
        textposition=["middle left" if end else "middle right" for end in late],
        textfont={"size": 11},
        hoverinfo="skip",
        cliponaxis=False,
    )
    figure = go.Figure([bars, names])
    figure.update_layout(
        height=min(90 + ROW_PX * len(rows), 4000),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "ms from the trace's start", "range": [0, total_ms * 1.01 or 1]},
        yaxis={
            "autorange": False,
            "range": [len(rows) - 0.5, -0.6],  # the first span at the top
            "showticklabels": False,
            "showgrid": False,
            "zeroline": False,
        },
        showlegend=False,
    )
    return figure
