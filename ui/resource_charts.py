"""The Resources page's charts: what each one shows, one read for all of them, and a plain
Vega-Lite line spec per chart.

`st.line_chart` builds each chart through Altair, which validates the whole specification
against the Vega-Lite JSON schema and deep-copies it several times: 13 charts cost ~1 s of
the page's script time (0.1–0.2 s a chart), more than reading and shaping their data. The
spec here is a literal dict handed to `st.vega_lite_chart` (nothing validated or copied), with
the same look: a line per series, a legend under it, the points at the hovered time marked
with their values in a tooltip. Times are the business time zone's wall clock, sent without a
zone and read by Vega-Lite as UTC so the axis shows them as they are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection

from monitoring_core import metrics_query
from monitoring_core.timerange import TimeRange
from ui import fmt

__all__ = [
    "CLOCK_LABELS",
    "DATABASE",
    "SYSTEM",
    "Chart",
    "bar_spec",
    "latest_text",
    "line_spec",
    "long_frame",
    "read_charts",
]


class Chart(NamedTuple):
    title: str
    metric: str
    aggregation: str  # per bin: avg for levels, max where the worst moment matters
    group_by: tuple[str, ...]
    unit: str
    scale: float = 1.0  # stored value × scale = shown value (a 0..1 ratio shown in %: 100)


SYSTEM = [
    Chart("CPU busy", "system_cpu_percent", "avg", ("host",), "%"),
    Chart("Load average (1 min)", "system_load1", "avg", ("host",), ""),
    Chart("Memory used", "system_memory_used_percent", "avg", ("host",), "%"),
    Chart("Disk used", "system_disk_used_percent", "max", ("host", "mount"), "%"),
    Chart("Network sent", "system_network_sent_bytes_per_second", "avg", ("interface",), "B/s"),
    Chart(
        "Network received",
        "system_network_received_bytes_per_second",
        "avg",
        ("interface",),
        "B/s",
    ),
]
DATABASE = [
    Chart("Connections", "db_connections", "avg", ("database",), ""),
    Chart("Connections used", "db_connections_used_percent", "max", ("database",), "%"),
    Chart("Cache hit ratio", "db_cache_hit_ratio", "min", ("database",), "%", scale=100),
    Chart("Locks held", "db_locks", "max", ("database",), ""),
    Chart("Sessions waiting for a lock", "db_sessions_waiting_for_lock", "max", ("database",), ""),
    Chart("Slow queries", "db_slow_queries", "max", ("database",), ""),
    Chart("Longest running query", "db_longest_query_seconds", "max", ("database",), "s"),
]


def read_charts(
    conn: Connection, charts: tuple[Chart, ...], tr: TimeRange, step: timedelta, tz: ZoneInfo
) -> list[tuple[pd.DataFrame, str]]:
    """Every chart's points (`metrics_query.query_metric`) over one connection, in order, as
    (`long_frame`, `latest_text`): shaped here so that a cached answer is ready to draw."""
    drawn = []
    for chart in charts:
        frame = metrics_query.query_metric(
            conn,
            metric_name=chart.metric,
            aggregation=chart.aggregation,
            interval=step,
            tr=tr,
            group_by=chart.group_by,
        )
        points = long_frame(frame, chart, tz)
        drawn.append((points, latest_text(points, chart.unit)))
    return drawn


def long_frame(frame: pd.DataFrame, chart: Chart, tz: ZoneInfo) -> pd.DataFrame:
    """Columns time (business wall clock, no zone), series (its dimension values, or the
    chart's title), value (times the chart's scale); one row per series and bucket
    (query_metric groups by both), in time order. Empty when `frame` is."""
    if frame.empty:
        return pd.DataFrame({"time": [], "series": [], "value": []})
    labels = frame[chart.group_by[0]].astype(str)
    for dimension in chart.group_by[1:]:
        labels = labels + " " + frame[dimension].astype(str)
    labels = labels.str.strip()
    out = pd.DataFrame(
        {
            "time": pd.to_datetime(frame["bucket"], utc=True)
            .dt.tz_convert(tz)
            .dt.tz_localize(None),
            # a point without the dimension: named as the chart is, not by its metric's name
            "series": labels.where(labels != "", chart.title),
            "value": frame["value"].astype(float) * chart.scale,
        }
    )
    return out.sort_values("time", kind="stable", ignore_index=True)


def latest_text(points: pd.DataFrame, unit: str) -> str:
    """`name: 12.3 %, …`: each series' last value (by name), with its unit (`ui.fmt.measured`)."""
    last = points.dropna(subset=["value"]).drop_duplicates("series", keep="last")
    return ", ".join(
        f"{name}: {fmt.measured(value, unit)}"
        for name, value in sorted(zip(last["series"], last["value"], strict=True))
    )


def sparse(points: pd.DataFrame) -> bool:
    """Whether some series has too few points for a line to show (one point draws no line:
    a worker that started minutes ago, or a long range's few buckets)."""
    return bool(len(points)) and int(points.groupby("series").size().min()) < 3


# Tick labels on the 24-hour clock used everywhere else (`14:00`, not Vega's `02 PM`); a tick
# at midnight names its day (`3 Dec`) instead.
CLOCK_LABELS = (
    "utchours(datum.value) == 0 && utcminutes(datum.value) == 0"
    " ? utcFormat(datum.value, '%-d %b') : utcFormat(datum.value, '%H:%M')"
)


def _clock_x() -> dict[str, Any]:
    return {"field": "time", "type": "temporal", "title": None, "scale": {"type": "utc"},
            "axis": {"labelExpr": CLOCK_LABELS}}  # fmt: skip


def _vega_time(moment: datetime) -> dict[str, Any]:
    """A wall-clock time (no zone) as a Vega-Lite DateTime on the UTC scale the points use."""
    return {"year": moment.year, "month": moment.month, "date": moment.day,
            "hours": moment.hour, "minutes": moment.minute, "seconds": moment.second,
            "utc": True}  # fmt: skip


def wall_span(start: datetime, end: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end] on the business wall clock without zone, as `long_frame` stamps points."""
    return (start.astimezone(tz).replace(tzinfo=None), end.astimezone(tz).replace(tzinfo=None))


def _time_tooltip() -> dict[str, Any]:
    unit = {"unit": "yearmonthdatehoursminutes", "utc": True}
    return {"field": "time", "type": "temporal", "title": "Time", "timeUnit": unit}


def bar_spec(unit: str, legend: str | None = None, height: int = 260) -> dict[str, Any]:
    """A Vega-Lite spec: stacked bars of `value` (a count), one colour per `series`, each bar
    from `time` to `until` (its bucket's end, so bars are as wide as their bucket), on the
    same 24-hour clock axis as `line_spec`, with a tooltip (series, time, value)."""
    return {
        "height": height,
        "mark": {"type": "bar", "orient": "vertical", "clip": True},
        "encoding": {
            "x": _clock_x(),
            "x2": {"field": "until"},
            "y": {"field": "value", "type": "quantitative", "title": unit or None,
                  "stack": "zero", "axis": {"format": ",~r"}},
            "color": {"field": "series", "type": "nominal", "title": legend,
                      "legend": {"orient": "bottom"}},
            "tooltip": [
                {"field": "series", "type": "nominal", "title": legend or "Series"},
                _time_tooltip(),
                {"field": "value", "type": "quantitative", "title": unit or "Value",
                 "format": ","},
            ],
        },
    }  # fmt: skip


def line_spec(
    unit: str,
    height: int = 220,
    dots: bool = False,
    span: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """A Vega-Lite spec: one line per `series` over `time`, the hovered time's points shown
    with a tooltip (series, time, value); with `dots` every point is drawn too, so a series
    of one or two points is visible. `span` (business wall clock, no zone, as `time`): the
    x axis covers it, where the points are within it (a worker that started minutes ago
    drew one dot in the middle of a chart of nothing)."""
    x = _clock_x()
    if span is not None:
        x["scale"]["domain"] = [_vega_time(moment) for moment in span]
    color = {"field": "series", "type": "nominal", "title": None, "legend": {"orient": "bottom"}}
    y = {"field": "value", "type": "quantitative", "title": unit or None, "axis": {"format": ",~r"}}
    return {
        "height": height,
        "encoding": {"x": x, "y": y, "color": color},
        "layer": [
            {"mark": {"type": "line", "clip": True, "point": dots}},
            {
                "params": [
                    {
                        "name": "hover",
                        "select": {
                            "type": "point",
                            "fields": ["time"],
                            "nearest": True,
                            "on": "pointerover",
                            "clear": "pointerout",
                        },
                    }
                ],
                "mark": {"type": "point", "filled": True, "size": 50},
                "encoding": {
                    "opacity": {
                        "condition": {"param": "hover", "empty": False, "value": 1},
                        "value": 0,
                    },
                    "tooltip": [
                        {"field": "series", "type": "nominal", "title": "Series"},
                        _time_tooltip(),
                        {
                            "field": "value",
                            "type": "quantitative",
                            "title": unit or "Value",
                            "format": ",.2f",
                        },
                    ],
                },
            },
        ],
    }
