"""One health check's detail view, as Healthchecks.io draws it: status and schedule in words,
last and next expected ping, the ping (or result) log and an up/down timeline over the range.

The frames are built by pure functions of the rows `health.queries.check_detail` returns, so
tests and the page see the same words; `render` draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from monitoring_core.health.rules import duration_words
from ui import charts, fmt, url_state, widgets
from ui.resource_charts import line_spec, sparse

__all__ = [
    "STATUS_COLORS",
    "LOG_ROWS",
    "TABS",
    "band_shares",
    "log_frame",
    "relative",
    "render",
    "results_frame",
    "timeline_figure",
    "uptime_frame",
    "when",
]

TABS = ("Log", "Timeline", "Response times")
LOG_ROWS = 500  # health.queries.check_detail reads at most this many pings or results
STATUS_COLORS = {
    "healthy": "#2ca02c",
    "warning": "#ff9f1c",
    "critical": "#d62728",
    "unknown": "#b0b0b0",
    "paused": "#6c8ebf",
}
_STATUS_WORDS = {
    "healthy": "up",
    "warning": "late or retrying",
    "critical": "down",
    "unknown": "no data",
    "paused": "paused",
}


def _status_word(status: str | None) -> str:
    """A status as a table cell or legend entry says it: `Up`, `Late or retrying`, `Down`."""
    if not status:
        return "—"
    word = _STATUS_WORDS.get(status, status)
    return word[:1].upper() + word[1:]


def when(at: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    """`today 14:03:05`, `yesterday 23:10:00`, `Tue 2 Jun 14:03`, `2 Jun 2025 14:03`, in `tz`."""
    if at is None or pd.isna(at):
        return "never"
    local, today = at.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        return f"today {local:%H:%M:%S}"
    if local.date() == today - timedelta(days=1):
        return f"yesterday {local:%H:%M:%S}"
    if local.date() == today + timedelta(days=1):
        return f"tomorrow {local:%H:%M}"
    if local.year == today.year:
        return f"{local:%a} {local.day} {local:%b %H:%M}"
    return f"{local.day} {local:%b %Y %H:%M}"


def relative(at: datetime | None, now: datetime) -> str:
    """`3 min ago`, `in 2 h 5 min`, `just now`."""
    if at is None:
        return "never"
    seconds = (at - now).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    words = duration_words(abs(seconds))
    return f"in {words}" if seconds > 0 else f"{words} ago"


def _kind(ping: Mapping[str, Any]) -> str:
    status = ping.get("exit_status")
    if ping["kind"] == "start":
        return "Started"
    if status is not None:
        return f"Exit status {status}" + (" (failure)" if ping["kind"] == "fail" else "")
    return "Failure signal" if ping["kind"] == "fail" else "Success"


def _size(body_bytes: int) -> str:
    if body_bytes < 1000:
        return fmt.plural(body_bytes, "byte")
    if body_bytes < 1_000_000:
        return f"{body_bytes / 1000:.1f} kB"
    return f"{body_bytes / 1_000_000:.1f} MB"


def _source(ping: Mapping[str, Any]) -> str:
    agent = ping.get("user_agent") or ""
    parts = [ping.get("source") or "unknown", ping.get("method") or "", agent[:60]]
    return " · ".join(p for p in parts if p)


def uptime_frame(
    checks: Iterable[Mapping[str, Any]],
    tz: ZoneInfo,
    now: datetime,
    next_ping: Callable[[Any, datetime], str],
) -> pd.DataFrame:
    """The Health page's uptime table: one row per check (`health.queries.check_summaries`),
    headers, types and statuses in words, times as `when`; uptimes stay shares (0..1) and the
    response time a number, so those columns sort."""
    rows = [
        {
            "Check": c["check_name"],
            "Service": c["service_name"] or "—",
            "Type": fmt.label(c["check_type"]),
            "Status": fmt.label(c["status"]),
            "Schedule": c["schedule"] or f"every {duration_words(c['check_frequency_seconds'])}",
            "Last run or ping": relative(c["last_ping_at"] or c["last_checked_at"], now),
            "Next ping": next_ping(c, now),
            "Wedding-critical": "Yes" if c["wedding_critical"] else "No",
            "Uptime 24 h": c["uptime_24h"],
            "Uptime 7 d": c["uptime_7d"],
            "Uptime 30 d": c["uptime_30d"],
            "Last response (ms)": c["response_time_ms"],
            "Last success": when(c["last_success_at"], tz, now),
            "Last result": c["last_message"] or "",
        }
        for c in checks
    ]
    return pd.DataFrame(rows)


def log_frame(pings: Iterable[Mapping[str, Any]], tz: ZoneInfo, now: datetime) -> pd.DataFrame:
    """The ping log as read: newest first, words instead of codes, bodies only as size + hash."""
    rows = [
        {
            "When": when(p["time"], tz, now),
            "Event": _kind(p),
            "Job ran": duration_words(p["duration_s"]) if p.get("duration_s") is not None else "",
            "From": _source(p),
            "Body": (
                f"{_size(p['body_bytes'])} · SHA-256 {p['body_sha256'][:12]}…"
                if p.get("body_sha256")
                else "none"
            ),
        }
        for p in pings
    ]
    return pd.DataFrame(rows, columns=["When", "Event", "Job ran", "From", "Body"])


def results_frame(
    results: Iterable[Mapping[str, Any]], tz: ZoneInfo, now: datetime
) -> pd.DataFrame:
    """Probe results, newest first: outcome, status after it, response time and message."""
    rows = [
        {
            "When": when(r["time"], tz, now),
            "Result": "OK" if r["success"] else "Failed",
            "Status after": _status_word(r["status"]),
            "Response time": fmt.milliseconds(r["response_time_ms"]),
            "Message": r["message"] or "",
        }
        for r in results
    ]
    return pd.DataFrame(
        rows, columns=["When", "Result", "Status after", "Response time", "Message"]
    )


def band_shares(bands: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds spent in each status over the timeline."""
    out: dict[str, float] = {}
    for band in bands:
        seconds = (band["to"] - band["from"]).total_seconds()
        out[band["status"]] = out.get(band["status"], 0.0) + seconds
    return out


def timeline_figure(bands: list[Mapping[str, Any]], tz: ZoneInfo) -> go.Figure:
    """One horizontal strip of coloured bands, one colour per status, over the range."""
    fig = go.Figure()
    for status, color in STATUS_COLORS.items():
        mine = [b for b in bands if b["status"] == status]
        if not mine:
            continue
        starts = [b["from"].astimezone(tz) for b in mine]
        lengths = [(b["to"] - b["from"]).total_seconds() * 1000 for b in mine]
        fig.add_bar(
            x=lengths,
            base=starts,
            y=["status"] * len(mine),
            orientation="h",
            name=_status_word(status),
            marker_color=color,
            customdata=[[duration_words(ms / 1000)] for ms in lengths],
            hovertemplate=f"{_status_word(status)} from %{{base|%a %-d %b %H:%M}} for "
            "%{customdata[0]}<extra></extra>",
        )
    fig.update_layout(
        barmode="overlay",
        height=150,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.5},
        xaxis={"type": "date", "range": _span(bands, tz)},
        yaxis={"visible": False},
    )
    charts.readable_time_axis(fig)
    return fig


def _span(bands: list[Mapping[str, Any]], tz: ZoneInfo) -> list[datetime] | None:
    """The axis spans the bands exactly (up to now), without plotly's padding."""
    return [bands[0]["from"].astimezone(tz), bands[-1]["to"].astimezone(tz)] if bands else None


def _header(detail: Mapping[str, Any], tz: ZoneInfo, now: datetime) -> None:
    check = detail["check"]
    st.markdown(
        f"### {fmt.md_escape(check['check_name'])} &nbsp; {widgets.status_badge(check['status'])}"
    )
    facts = [f"{fmt.md_escape(fmt.label(check['check_type']))} check"]
    if check["schedule"]:
        facts.append(fmt.md_escape(check["schedule"]))
    else:
        facts.append(f"every {duration_words(check['check_frequency_seconds'])}")
    if check["paused"]:
        facts.append(
            f"paused {relative(check['paused_at'], now)} ({when(check['paused_at'], tz, now)})"
        )
    st.caption(" · ".join(facts))
    if check["check_type"] != "heartbeat":
        last = check["last_checked_at"]
        st.markdown(
            f"**Last run:** {relative(last, now)} ({when(last, tz, now)})"
            if last
            else "**Last run:** never"
        )
        return
    last, due = detail["last_ping_at"], detail["next_expected_at"]
    left, right = st.columns(2)
    left.markdown(
        f"**Last ping:** {relative(last, now)}" + (f" ({when(last, tz, now)})" if last else "")
    )
    if check["paused"]:
        right.markdown("**Next expected ping:** none while paused (a ping resumes the check)")
    elif due is None:
        right.markdown("**Next expected ping:** any time (the period starts at the first ping)")
    elif due >= now:
        right.markdown(f"**Next expected ping:** {relative(due, now)} ({when(due, tz, now)})")
    else:
        grace_ends = due + timedelta(seconds=detail["grace_seconds"])
        state = "down since" if grace_ends < now else "late; down"
        right.markdown(
            f"**Next expected ping:** overdue by {duration_words((now - due).total_seconds())} "
            f"(due {when(due, tz, now)}; {state} {when(grace_ends, tz, now)})"
        )


def _timeline(detail: Mapping[str, Any], tz: ZoneInfo) -> None:
    bands = detail["bands"]
    shares = band_shares(bands)
    total = sum(shares.values())
    if total > 0:
        parts = [
            f"{_STATUS_WORDS.get(s, s)} {fmt.percent(seconds / total, 1)} ({duration_words(seconds)})"
            for s, seconds in sorted(shares.items(), key=lambda kv: -kv[1])
        ]
        st.caption("Over this range: " + fmt.md_escape(" · ".join(parts)))
    st.plotly_chart(
        timeline_figure(bands, tz),
        width="stretch",
        key="health_timeline",
        config={"displayModeBar": False},  # its buttons would cover the strip
    )


def render(
    detail: Mapping[str, Any],
    *,
    tz: ZoneInfo,
    now: datetime,
    actions: Callable[[], None] | None = None,
    response_times: Callable[[], pd.DataFrame] | None = None,
) -> str:
    """Draw the detail view: header, then `actions` (the page's buttons), then the views; the
    open view is bound to `?tab=`. `response_times` (time, response_time_ms; read only when
    its view is open) feeds the chart. Returns the open view."""
    _header(detail, tz, now)
    if actions is not None:
        actions()
    view = url_state.tabs(list(TABS), param="tab", label="Check view")
    if view == "Log":
        _log(detail, tz, now)
    elif view == "Timeline":
        _timeline(detail, tz)
        _changes(detail["flips"], tz, now)
    else:
        frame = response_times() if response_times is not None else pd.DataFrame()
        frame = frame.dropna(subset=["response_time_ms"]) if not frame.empty else frame
        if frame.empty:
            st.info("No response times in this range (heartbeats have none).")
        else:
            points = pd.DataFrame(
                {  # the business wall clock without a zone: Vega-Lite draws it as it is
                    "time": pd.to_datetime(frame["time"], utc=True)
                    .dt.tz_convert(tz)
                    .dt.tz_localize(None),
                    "series": "Response time",
                    "value": frame["response_time_ms"].astype(float),
                }
            )
            spec = line_spec("ms", height=260, dots=sparse(points))
            st.vega_lite_chart(points, spec, width="stretch")
    return view


def _log(detail: Mapping[str, Any], tz: ZoneInfo, now: datetime) -> None:
    if detail["check"]["check_type"] == "heartbeat":
        frame, noun = log_frame(detail["pings"], tz, now), "ping"
        note = "; ping bodies are never stored, only their size and SHA-256"
    else:
        frame, noun, note = results_frame(detail["results"], tz, now), "result", ""
    if frame.empty:
        st.info(f"No {noun}s in this range.")
        return
    capped = len(frame) >= LOG_ROWS
    shown = (
        f"the newest {fmt.count(len(frame))} {noun}s" if capped else fmt.plural(len(frame), noun)
    )
    text = f"{shown} in this range, newest first{note}."
    st.caption(text[0].upper() + text[1:])
    st.dataframe(frame, hide_index=True, width="stretch")


def _changes(flips: list[Mapping[str, Any]], tz: ZoneInfo, now: datetime) -> None:
    if not flips:
        st.caption("No status change in this range.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "When": [when(f["time"], tz, now) for f in flips],
                "From": [_status_word(f["from_status"]) for f in flips],
                "To": [_status_word(f["to_status"]) for f in flips],
                "Why": [f["reason"] for f in flips],
            }
        ),
        hide_index=True,
        width="stretch",
    )
