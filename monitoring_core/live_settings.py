"""Settings an admin changes while the system runs, which every process applies within seconds.

Two `settings` rows (Admin page → Settings, or `config apply`; `config_io.settings_rows` checks
and audits them), each defaulting to the environment when the row is missing:

- `wedding_calendar`: `{time_zone, peak_months, season_strictness, saturday_raise_levels}`
  (`wedding_calendar.parse_calendar`); defaults `MONITORING_TZ`, May–October, 0.2, 1.
- `key_rate_limits`: `{requests_per_minute, points_per_minute}` for keys without limits of their
  own; defaults `MONITORING_KEY_REQUESTS_PER_MINUTE` / `MONITORING_KEY_POINTS_PER_MINUTE`; 0 is
  unlimited.

Readers: a worker job reads them once per run (`read_live`, one query); an API or UI process
keeps a `LiveCache`, refreshed in the background every `LIVE_TTL_S` seconds, so a change
reaches every process within that (plus one query) and no request waits for the database. A
broken row (written by hand in SQL) is logged and its defaults apply: a bad setting must not
stop alerting or ingest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from monitoring_core.config import Settings
from monitoring_core.schema import settings as settings_table
from monitoring_core.wedding_calendar import Calendar, parse_calendar

__all__ = [
    "CALENDAR_SETTING",
    "KEY_LIMITS_SETTING",
    "LIVE_TTL_S",
    "MAX_KEY_LIMIT",
    "KeyLimits",
    "LiveCache",
    "LiveSettings",
    "defaults",
    "parse_key_limits",
    "read_calendar",
    "read_live",
    "validate_calendar",
    "validate_key_limits",
]

log = logging.getLogger(__name__)
CALENDAR_SETTING = "wedding_calendar"
KEY_LIMITS_SETTING = "key_rate_limits"
LIVE_TTL_S = 5.0  # a changed setting reaches every API and UI process within this
MAX_KEY_LIMIT = 1_000_000_000
_KEY_FIELDS = ("requests_per_minute", "points_per_minute")


@dataclass(frozen=True)
class KeyLimits:
    """Per-minute limits for keys without their own (0: unlimited)."""

    requests_per_minute: int
    points_per_minute: int


@dataclass(frozen=True)
class LiveSettings:
    calendar: Calendar
    key_limits: KeyLimits


def validate_key_limits(value: Any) -> None:
    """ValueError naming every problem of a `key_rate_limits` value."""
    if not isinstance(value, Mapping):
        raise ValueError(f"must be an object with {', '.join(_KEY_FIELDS)}")
    problems = [
        f"{k}: unknown field; known: {', '.join(_KEY_FIELDS)}"
        for k in value
        if k not in _KEY_FIELDS
    ]
    for name in _KEY_FIELDS:
        given = value.get(name)
        if name in value and (
            isinstance(given, bool) or not isinstance(given, int) or not 0 <= given <= MAX_KEY_LIMIT
        ):
            problems.append(f"{name}: must be a whole number from 0 (unlimited) to {MAX_KEY_LIMIT}")
    if problems:
        raise ValueError("; ".join(problems))


def parse_key_limits(value: Any, settings: Settings) -> KeyLimits:
    """The limits of a `key_rate_limits` value (None: the environment's); fields left out take
    the environment's. ValueError naming every problem."""
    value = {} if value is None else value
    validate_key_limits(value)
    return KeyLimits(
        requests_per_minute=value.get("requests_per_minute", settings.key_requests_per_minute),
        points_per_minute=value.get("points_per_minute", settings.key_points_per_minute),
    )


def validate_calendar(value: Any) -> None:
    """ValueError naming every problem of a `wedding_calendar` value."""
    parse_calendar(value, "UTC")


def defaults(settings: Settings) -> LiveSettings:
    """The values without settings rows: the environment's."""
    return LiveSettings(parse_calendar(None, settings.tz_name), parse_key_limits(None, settings))


def _parsed(key: str, parse: Callable[[], Any], fallback: Any) -> Any:
    try:
        return parse()
    except ValueError:
        log.warning("settings row %s ignored (its defaults apply)", key, exc_info=True)
        return fallback


def read_live(conn: Connection, settings: Settings) -> LiveSettings:
    """Both live settings in one query (a job reads them once per run)."""
    rows = dict(
        conn.execute(
            select(settings_table.c.key, settings_table.c.value).where(
                settings_table.c.key.in_((CALENDAR_SETTING, KEY_LIMITS_SETTING))
            )
        ).all()
    )
    base = defaults(settings)
    calendar = _parsed(
        CALENDAR_SETTING,
        lambda: parse_calendar(rows.get(CALENDAR_SETTING), settings.tz_name),
        base.calendar,
    )
    limits = _parsed(
        KEY_LIMITS_SETTING,
        lambda: parse_key_limits(rows.get(KEY_LIMITS_SETTING), settings),
        base.key_limits,
    )
    return LiveSettings(calendar, limits)


def read_calendar(engine: Engine, settings: Settings) -> Calendar:
    """The business calendar now (a job's one read per run; the defaults if the database
    cannot be read: the caller's own queries then report the outage)."""
    try:
        with engine.connect() as conn:
            return read_live(conn, settings).calendar
    except Exception:
        log.warning("live settings unreadable; the environment's calendar applies", exc_info=True)
        return defaults(settings).calendar


class LiveCache:
    """A process's copy of the live settings, at most `ttl` seconds old (module docstring).

    `current()` never waits for the database once it has a value: when the copy is stale it
    starts one background refresh and answers with the copy. A refresh that fails keeps the
    copy (the environment's values before the first success)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        ttl: float = LIVE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.settings, self.ttl, self._clock = engine, settings, ttl, clock
        self._value: LiveSettings | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    def refresh(self) -> LiveSettings:
        """Read now (blocking); the previous copy or the defaults when the read fails."""
        try:
            with self.engine.connect() as conn:
                value = read_live(conn, self.settings)
        except Exception:
            log.warning("live settings unreadable; keeping the last values", exc_info=True)
            value = self._value or defaults(self.settings)
        with self._lock:
            self._value, self._expires = value, self._clock() + self.ttl
            self._refreshing = False
        return value

    def invalidate(self) -> None:
        """The next `current()` reads again (after this process changed a setting)."""
        with self._lock:
            self._value = None

    def current(self) -> LiveSettings:
        with self._lock:
            value, stale = self._value, self._clock() >= self._expires
            start = value is not None and stale and not self._refreshing
            if start:
                self._refreshing = True
        if value is None:
            return self.refresh()
        if start:
            threading.Thread(target=self.refresh, name="live-settings", daemon=True).start()
        return value

    @property
    def calendar(self) -> Calendar:
        return self.current().calendar

    @property
    def key_limits(self) -> KeyLimits:
        return self.current().key_limits
