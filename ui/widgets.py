"""Widgets every page shares: time range, auto-refresh, KPI card, badges, wedding-day banner."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components
from streamlit_autorefresh import st_autorefresh

from monitoring_core import clock
from monitoring_core.timerange import PRESETS, TimeRange, parse_time_range
from monitoring_core.wedding_calendar import is_peak_season, is_wedding_day, saturday_levels
from ui import url_state
from ui.data import business_tz

__all__ = [
    "CUSTOM",
    "RANGE_CHOICES",
    "REFRESH_S",
    "auto_refresh_toggle",
    "chart_interval",
    "close_sidebar_after_navigation",
    "current_now",
    "current_time_range",
    "events_until",
    "kpi_card",
    "severity_badge",
    "small_table",
    "status_badge",
    "table_height",
    "time_range_picker",
    "wedding_day_banner",
]

RANGE_CHOICES = ("1h", "24h", "7d", "30d", "90d")
REFRESH_S = 30
_RANGE_KEY = "time_range"
_FROM_KEY = "time_from"
_TO_KEY = "time_to"
_RANGE_SEEN = "_time_range_seen"  # (page, (range, from, to)) as last written to the URL
CUSTOM = "Custom"
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
    """The sidebar range selector (the app draws it once; pages read `current_time_range`).

    The range lives in the URL so a link opens the same period: `?range=7d` for a preset
    (24 h, the default, is left out), `?from=…&to=…` (ISO 8601 with the business time zone's
    offset) for an absolute period, chosen with "Custom"."""
    tz = business_tz()
    state = st.session_state
    asked = _range_in_url(tz)
    raw = (url_state.get("range"), url_state.get("from"), url_state.get("to"))
    _seen_page, seen_raw = state.get(_RANGE_SEEN, (None, None))
    page = url_state.current_page()
    # An address naming a range (a link, back/forward) wins; one naming none keeps the
    # session's: a page switch drops the query string and leaves such an entry in the history.
    if _RANGE_KEY not in state or (raw != seen_raw and asked is not None):
        if isinstance(asked, TimeRange):
            state[_RANGE_KEY] = CUSTOM
            state[_FROM_KEY] = asked.start.astimezone(tz).replace(tzinfo=None)
            state[_TO_KEY] = asked.end.astimezone(tz).replace(tzinfo=None)
        else:
            state[_RANGE_KEY] = asked or "24h"
    choice = st.sidebar.segmented_control(
        "Time range", (*RANGE_CHOICES, CUSTOM), key=_RANGE_KEY, required=True
    )
    if choice == CUSTOM:
        end = current_now().astimezone(tz).replace(tzinfo=None, second=0)
        state.setdefault(_FROM_KEY, end - timedelta(hours=24))
        state.setdefault(_TO_KEY, end)
        st.sidebar.datetime_input("From", key=_FROM_KEY, format="YYYY-MM-DD")
        st.sidebar.datetime_input("To", key=_TO_KEY, format="YYYY-MM-DD")
        custom = _custom_range(tz)
        if custom is None:
            st.sidebar.error("'To' must be after 'From'; showing the last 24 hours.")
            written: tuple[str | None, ...] = (None, None, None)
        else:
            written = (None, _iso(custom.start, tz), _iso(custom.end, tz))
    else:
        # 24 h, the default, stays out of a clean address, but is written once another range
        # was in it: back/forward then step between them instead of keeping the other.
        written = (None if choice == "24h" and raw == (None, None, None) else choice, None, None)
    for name, value in zip(("range", "from", "to"), written, strict=True):
        url_state.put(name, value)
    state[_RANGE_SEEN] = (page, written)


def _iso(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).isoformat(timespec="minutes")


def _range_in_url(tz: ZoneInfo) -> str | TimeRange | None:
    """What the URL asks for: a preset name, an absolute range, or None (nothing valid)."""
    preset, start, end = url_state.get("range"), url_state.get("from"), url_state.get("to")
    if start and end:
        try:
            return parse_time_range(None, now=current_now(), start=start, end=end)
        except ValueError:
            return None
    return preset if preset in RANGE_CHOICES else None


def _custom_range(tz: ZoneInfo) -> TimeRange | None:
    start, end = st.session_state.get(_FROM_KEY), st.session_state.get(_TO_KEY)
    if not (isinstance(start, datetime) and isinstance(end, datetime)):
        return None
    lo, hi = (m if m.tzinfo else m.replace(tzinfo=tz) for m in (start, end))
    return TimeRange(lo, hi) if hi > lo else None


def current_time_range() -> TimeRange:
    """The range chosen in the sidebar (or named by the URL when no picker is drawn): a preset
    ending now, or the absolute from/to; the last 24 h when nothing (valid) is chosen."""
    preset = st.session_state.get(_RANGE_KEY)
    now = current_now()
    if preset is None:
        asked = _range_in_url(business_tz())
        if isinstance(asked, TimeRange):
            return asked
        preset = asked
    if preset == CUSTOM:
        custom = _custom_range(business_tz())
        if custom is not None:
            return custom
        preset = "24h"
    return TimeRange(now - PRESETS.get(preset or "24h", PRESETS["24h"]), now)


def events_until(tr: TimeRange) -> datetime:
    """Where a list of events (history, timeline) should end: a range ending at the page's
    now (floored to REFRESH_S so reads are shared) is read to the end of that refresh step,
    so an action taken a moment ago is listed at once rather than up to 30 s later."""
    return tr.end + timedelta(seconds=REFRESH_S) if tr.end == current_now() else tr.end


_LAST_PAGE = "_last_page"
# Streamlit collapses the sidebar on narrow screens only when the app loads; a page opened from
# the sidebar leaves it covering the page. After a page change, on a screen narrower than
# Streamlit's breakpoint (768 px) with the sidebar open, this presses its own collapse button.
_CLOSE_SIDEBAR = """<script>
const doc = window.parent.document;
const bar = doc.querySelector('[data-testid="stSidebar"]');
const box = bar && bar.getBoundingClientRect();
if (window.parent.innerWidth < 768 && box && box.width > 0 && box.right > 0) {
  doc.querySelector('[data-testid="stSidebarCollapseButton"] button')?.click();
}
</script>"""


def close_sidebar_after_navigation(page: str) -> None:
    """On a phone, close the sidebar once another page has been opened (app.py calls this on
    every run with the page's URL path; it draws a zero-height frame only after a change)."""
    previous = st.session_state.get(_LAST_PAGE)
    st.session_state[_LAST_PAGE] = page
    if previous is not None and previous != page:
        with st.sidebar:  # not in the page: its zero-height frame would still add a gap there
            components.html(_CLOSE_SIDEBAR, height=0)


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
    delta_arrow: Literal["auto", "up", "down", "off"] | None = None,
) -> None:
    """One number with a label, an optional change and a tooltip, in a bordered card. A
    `delta` that is not a change ("2 down", "0 pending · 1 acked", "MTTA 14 min") gets no
    arrow: one is drawn only when the text starts with a sign (a change: "+8 %"), unless
    `delta_arrow` says otherwise."""
    arrow = delta_arrow or ("auto" if delta and delta.lstrip()[:1] in "+-−" else "off")
    st.metric(
        label, value, delta=delta, delta_color=delta_color, help=help, border=True,
        delta_arrow=arrow,
    )  # fmt: skip


def table_height(rows: int, *, max_rows: int = 30) -> int:
    """Pixel height that shows `rows` rows of a st.dataframe without an inner scrollbar."""
    return 38 + 35 * max(1, min(rows, max_rows))


STATIC_ROWS = 25  # up to this many rows a table is drawn as plain HTML (st.table)


def small_table(frame: pd.DataFrame, *, max_rows: int = STATIC_ROWS) -> None:
    """A short table of facts as plain HTML (st.table): long values wrap instead of being cut
    at the column's edge, and the page is idle sooner. Each st.dataframe is a canvas grid with
    its own accessibility table that the browser keeps laying out for ~0.1–0.3 s after the
    script ends (the error group's Event tab drew eight). Longer tables stay st.dataframe
    (scrolling, sorting)."""
    if len(frame) <= max_rows:
        st.table(frame, hide_index=True, border="horizontal")
    else:
        st.dataframe(frame, hide_index=True, width="stretch", height=table_height(len(frame)))


def severity_badge(severity: str) -> str:
    """Markdown for a coloured severity badge (critical..info, SEV1..SEV4)."""
    color = _SEVERITY_COLORS.get(severity.lower(), "gray")
    return f":{color}-badge[{severity.upper()}]"


def status_badge(status: str) -> str:
    """Markdown for a coloured health status badge (healthy, degraded, critical, unknown)."""
    color, icon = _STATUS_COLORS.get(status.lower(), _STATUS_COLORS["unknown"])
    return f":{color}-badge[{icon} {status.capitalize()}]"


def wedding_day_banner(now: datetime | None = None) -> None:
    """On Saturdays in the business time zone: a banner saying the wedding-day rules are in
    force (as the calendar setting has them)."""
    moment = now or clock.now()
    tz = business_tz()
    if is_wedding_day(moment, tz):
        season = " in peak season" if is_peak_season(moment, tz) else ""
        levels = saturday_levels(tz)
        raised = {0: "keep their severity", 1: "fire one severity higher"}.get(
            levels, f"fire {levels} severities higher"
        )
        st.warning(
            f"**Wedding day{season}.** Couples are getting married today: weekend-escalation "
            f"rules {raised} and escalations run at the wedding-day pace "
            "(immediately, then 5 and 15 minutes).",
            icon=":material/favorite:",
        )
