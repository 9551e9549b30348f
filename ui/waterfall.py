"""The Traces page's waterfall: one trace's spans as horizontal bars (offset, duration), in
the tree order `traces.rules.waterfall` gives them; error spans red."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ui import fmt

__all__ = ["KINDS", "waterfall_figure"]

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def waterfall_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Bars for `rows` (dicts with depth, service, name, status_code, offset_ms, duration_ms,
    kind), the first at the top."""
    total_ms = max((r["offset_ms"] + r["duration_ms"] for r in rows), default=0.0)
    labels = [
        f"{'  ' * min(r['depth'], 20)}{r['service']}: {r['name'][:60]} ({i})"
        for i, r in enumerate(rows)
    ]
    colors = ["#d62728" if r["status_code"] == 2 else "#1f77b4" for r in rows]
    figure = go.Figure(
        go.Bar(
            y=labels,
            x=[max(r["duration_ms"], total_ms / 1000) for r in rows],  # a 0 ms span stays visible
            base=[r["offset_ms"] for r in rows],
            orientation="h",
            marker_color=colors,
            customdata=[
                [fmt.milliseconds(r["duration_ms"]), KINDS.get(r["kind"], "?")] for r in rows
            ],
            hovertemplate="%{y}<br>starts at %{base:.1f} ms, lasts %{customdata[0]}"
            " (%{customdata[1]})<extra></extra>",
        )
    )
    figure.update_layout(
        height=min(120 + 22 * len(rows), 4000),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="ms from the trace's start",
        yaxis={"autorange": "reversed", "tickfont": {"family": "monospace"}},
        showlegend=False,
    )
    return figure
