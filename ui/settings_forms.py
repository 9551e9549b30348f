"""Admin → Settings: forms for the settings every process applies live (`live_settings`).

The wedding calendar (business time zone, peak-season months, season strictness, Saturday
raise) and the default per-key rate limits. Each save goes through `save_setting` (admins
only, checked the way the readers read it, audited); "Back to the defaults" removes the row
so the environment's values (`MONITORING_TZ`, `MONITORING_KEY_*`) apply again. Other API and
UI processes and the worker pick a change up within `LIVE_TTL_S` seconds.
"""

from __future__ import annotations

import calendar as month_names
from functools import partial
from typing import Any

import streamlit as st
from sqlalchemy import Connection

from monitoring_core import clock
from monitoring_core.config import Settings
from monitoring_core.config_io.settings_rows import clear_setting, save_setting
from monitoring_core.live_settings import (
    CALENDAR_SETTING,
    KEY_LIMITS_SETTING,
    LIVE_TTL_S,
    MAX_KEY_LIMIT,
    parse_key_limits,
)
from monitoring_core.wedding_calendar import (
    MAX_SATURDAY_LEVELS,
    MAX_STRICTNESS,
    PEAK_MONTHS,
    parse_calendar,
)
from ui import actions, data, fmt

__all__ = ["LIVE_KEYS", "live_settings_forms"]

LIVE_KEYS = frozenset({CALENDAR_SETTING, KEY_LIMITS_SETTING})  # edited here, not as JSON
MONTHS = {m: month_names.month_name[m] for m in range(1, 13)}


def _save(conn: Connection, *, key: str, value: Any, who: tuple[str, str]) -> None:
    save_setting(conn, key=key, value=value, actor=who[0], role=who[1], now=clock.now())
    data.live_settings().invalidate()  # this process at once; the others within LIVE_TTL_S


def _clear(conn: Connection, *, key: str, who: tuple[str, str]) -> None:
    clear_setting(conn, key=key, actor=who[0], role=who[1], now=clock.now())
    data.live_settings().invalidate()


def _origin(key: str, current: dict[str, Any]) -> str:
    return "set here" if key in current else "the environment's defaults"


def _calendar_form(
    flash: str, who: tuple[str, str], current: dict[str, Any], env: Settings
) -> None:
    try:
        shown = parse_calendar(current.get(CALENDAR_SETTING), env.tz_name)
    except ValueError:  # a row written by hand that the readers ignore: start from defaults
        shown = parse_calendar(None, env.tz_name)
    st.markdown(f"**Wedding calendar** ({_origin(CALENDAR_SETTING, current)})")
    with st.form("calendar_form", border=True):
        zone = st.text_input(
            "Business time zone (IANA name)",
            shown.key,
            help="Days, Saturdays, business days and page times are in this zone "
            f"(MONITORING_TZ={env.tz_name} when unset).",
        )
        months = st.multiselect(
            "Peak-season months",
            list(MONTHS),
            default=sorted(shown.peak_months),
            format_func=MONTHS.__getitem__,
            help="Rules with the season adjustment use stricter thresholds in these months "
            f"(default {', '.join(MONTHS[m][:3] for m in sorted(PEAK_MONTHS))}).",
        )
        strictness = st.number_input(
            "Season strictness (%)",
            min_value=0,
            max_value=int(MAX_STRICTNESS * 100),
            value=round(shown.strictness * 100),
            step=5,
            help="How much stricter in season: 20 % lowers a 'greater than 1000' threshold to "
            "800 and raises a 'less than 100' one to 120 (0 to 90 %).",
        )
        levels = st.number_input(
            "Saturday raise (severity levels)",
            min_value=0,
            max_value=MAX_SATURDAY_LEVELS,
            value=shown.saturday_levels,
            help="Rules with weekend escalation fire this many levels higher on Saturdays.",
        )
        save, reset = st.columns([1, 3])
        saved = save.form_submit_button("Save calendar")
        cleared = reset.form_submit_button("Back to the defaults")
    if saved:
        value = {
            "time_zone": zone.strip(),
            "peak_months": sorted(int(m) for m in months),
            "season_strictness": round(float(strictness) / 100, 4),
            "saturday_raise_levels": int(levels),
        }
        actions.run(
            flash,
            partial(_save, key=CALENDAR_SETTING, value=value, who=who),
            done=f"Wedding calendar saved: applies everywhere within {LIVE_TTL_S:g} s",
            failed="Wedding calendar not saved: ",
            refused=(ValueError,),
        )
    if cleared:
        actions.run(
            flash,
            partial(_clear, key=CALENDAR_SETTING, who=who),
            done="Wedding calendar back to the environment's defaults",
            refused=(ValueError,),
        )


def _limits_form(flash: str, who: tuple[str, str], current: dict[str, Any], env: Settings) -> None:
    try:
        shown = parse_key_limits(current.get(KEY_LIMITS_SETTING), env)
    except ValueError:
        shown = parse_key_limits(None, env)
    st.markdown(f"**Default key rate limits** ({_origin(KEY_LIMITS_SETTING, current)})")
    with st.form("key_limits_form", border=True):
        requests = st.number_input(
            "Requests per key and minute (0: unlimited)",
            min_value=0,
            max_value=MAX_KEY_LIMIT,
            value=shown.requests_per_minute,
            help="For keys without a limit of their own "
            f"(MONITORING_KEY_REQUESTS_PER_MINUTE={env.key_requests_per_minute} when unset).",
        )
        points = st.number_input(
            "Points per key and minute (0: unlimited)",
            min_value=0,
            max_value=MAX_KEY_LIMIT,
            value=shown.points_per_minute,
            help="Metric points, samples and events an ingest key may send "
            f"(MONITORING_KEY_POINTS_PER_MINUTE={env.key_points_per_minute} when unset).",
        )
        save, reset = st.columns([1, 3])
        saved = save.form_submit_button("Save limits")
        cleared = reset.form_submit_button("Back to the defaults")
    if saved:
        value = {"requests_per_minute": int(requests), "points_per_minute": int(points)}
        actions.run(
            flash,
            partial(_save, key=KEY_LIMITS_SETTING, value=value, who=who),
            done=f"Default key limits saved: every API process applies them within {LIVE_TTL_S:g} s",
            failed="Key limits not saved: ",
            refused=(ValueError,),
        )
    if cleared:
        actions.run(
            flash,
            partial(_clear, key=KEY_LIMITS_SETTING, who=who),
            done="Default key limits back to the environment's",
            refused=(ValueError,),
        )


def live_settings_forms(flash: str, who: tuple[str, str], current: dict[str, Any]) -> None:
    """Both forms (the caller has checked the admin role; the services check it again)."""
    env = data.get_settings()
    st.caption(
        "Applied by every API process, page and the worker within "
        f"{fmt.md_escape(f'{LIVE_TTL_S:g}')} s of saving; each change is in the audit log."
    )
    _calendar_form(flash, who, current, env)
    _limits_form(flash, who, current, env)
