"""Widgets every page shares: time range, auto-refresh, KPI card, badges, wedding-day banner."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import streamlit as st
from streamlit_autorefresh import st_autorefresh

from monitoring_core import clock
from monitoring_core.timerange import PRESETS, TimeRange
from monitoring_core.wedding_calendar import is_peak_season, is_wedding_day
from ui.data import get_settings

__all__ = [
    "RANGE_CHOICES",
    "REFRESH_S",
    "auto_refresh_toggle",
    "chart_interval",
    "current_now",
    "current_time_range",
    "kpi_card",
    "severity_badge",
    "status_badge",
    "table_height",
    "time_range_picker",
    "wedding_day_banner",
]

RANGE_CHOICES = ("1h", "24h", "7d", "30d", "90d")
REFRESH_S = 30
_RANGE_KEY = "time_range"
_SEVERITY_COLORS = {
    "critical": "red",
    "high": "orange",
    "medium": "yellow",
    "low": "blue",
    "info": "gray",
    "sev1": "red",
    "sev2": "orange",
    "sev3": "yellow",
    "sev4": "blue",
}
_STATUS_COLORS = {
    "healthy": ("green", ":material/check_circle:"),
    "degraded": ("orange", ":material/warning:"),
    "warning": ("orange", ":material/warning:"),
    "critical": ("red", ":material/error:"),
    "unknown": ("gray", ":material/help:"),
}


def current_now() -> datetime:
    """Now, floored to REFRESH_S seconds so cached reads are shared between reruns."""
    now = clock.now()
    return now - timedelta(seconds=now.timestamp() % REFRESH_S, microseconds=now.microsecond)


def chart_interval(tr: TimeRange) -> timedelta:
    """A chart bucket giving at most ~180 points: fewer, fuller buckets make steadier p95s."""
    for step in (timedelta(minutes=m) for m in (1, 5, 15, 60, 360, 1440)):
        if tr.duration / step <= 180:
            return step
    return timedelta(days=7)


def time_range_picker() -> None:
    """The sidebar range selector (the app draws it once; pages read `current_time_range`)."""
    st.sidebar.segmented_control(
        "Time range", RANGE_CHOICES, default="24h", key=_RANGE_KEY, required=True
    )


def current_time_range() -> TimeRange:
    """The range chosen in the sidebar, ending now (24 h when nothing is chosen yet)."""
    preset = st.session_state.get(_RANGE_KEY) or "24h"
    now = current_now()
    return TimeRange(now - PRESETS[preset], now)


def auto_refresh_toggle() -> None:
    """A sidebar toggle that reruns the whole app every REFRESH_S seconds while on."""
    if st.sidebar.toggle(f"Auto-refresh every {REFRESH_S} s", key="auto_refresh"):
        st_autorefresh(interval=REFRESH_S * 1000, key="auto_refresh_tick")


def kpi_card(
    label: str,
    value: str,
    *,
    delta: str | None = None,
    delta_color: Literal["normal", "inverse", "off"] = "normal",
    help: str | None = None,
) -> None:
    """One number with a label, an optional change and a tooltip, in a bordered card."""
    st.metric(label, value, delta=delta, delta_color=delta_color, help=help, border=True)


def table_height(rows: int, *, max_rows: int = 30) -> int:
    """Pixel height that shows `rows` rows of a st.dataframe without an inner scrollbar."""
    return 38 + 35 * max(1, min(rows, max_rows))


def severity_badge(severity: str) -> str:
    """Markdown for a coloured severity badge (critical..info, SEV1..SEV4)."""
    color = _SEVERITY_COLORS.get(severity.lower(), "gray")
    return f":{color}-badge[{severity.upper()}]"


def status_badge(status: str) -> str:
    """Markdown for a coloured health status badge (healthy, degraded, critical, unknown)."""
    color, icon = _STATUS_COLORS.get(status.lower(), _STATUS_COLORS["unknown"])
    return f":{color}-badge[{icon} {status.capitalize()}]"


def wedding_day_banner(now: datetime | None = None) -> None:
    """On Saturdays in MONITORING_TZ: a banner saying the wedding-day rules are in force."""
    moment = now or clock.now()
    tz = get_settings().tz
    if is_wedding_day(moment, tz):
        season = " in peak season" if is_peak_season(moment, tz) else ""
        st.warning(
            f"**Wedding day{season}.** Couples are getting married today: weekend-escalation "
            "rules fire one severity higher and escalations run at the wedding-day pace "
            "(immediately, then 5 and 15 minutes).",
            icon=":material/favorite:",
        )
