"""The demo platform's calendar: how busy each hour is, and the few bad spells it lived through.

Shared by the demo loaders so errors, business events and timings rise and fall together.
All arrays of instants are numpy `datetime64[us]` in UTC (numpy has no time zones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from monitoring_core.wedding_calendar import PEAK_MONTHS

__all__ = [
    "DEMO_TZ",
    "HOUR",
    "Spell",
    "bad_spells",
    "hour_grid",
    "shape_at",
    "spread_events",
    "to_np",
    "traffic_shape",
]

# The demo platform's customers are in the UK; a fixed zone keeps the data set deterministic
# whatever MONITORING_TZ says (the UI still marks Saturdays in MONITORING_TZ).
DEMO_TZ = ZoneInfo("Europe/London")
HOUR = np.timedelta64(1, "h")

# Relative traffic by local hour: quiet nights, planning at lunch, a strong evening peak when
# couples plan together after work.
_DIURNAL = np.array(
    [
        0.18,
        0.12,
        0.09,
        0.08,
        0.08,
        0.12,
        0.25,
        0.45,
        0.75,
        0.95,
        1.05,
        1.10,
        1.15,
        1.10,
        1.05,
        1.05,
        1.10,
        1.20,
        1.40,
        1.60,
        1.65,
        1.45,
        1.00,
        0.50,
    ]
)
_DIURNAL = _DIURNAL / _DIURNAL.mean()
# Monday..Sunday: Saturday is wedding day (suppliers and couples live on their timelines).
_WEEKDAY = np.array([0.95, 0.97, 1.00, 1.02, 1.08, 1.75, 1.20])
_SEASON = {True: 1.30, False: 0.85}  # May–October peak season vs the rest of the year


def to_np(moment: datetime) -> np.datetime64:
    """An aware datetime as a naive-UTC numpy instant."""
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def hour_grid(start: datetime, now: datetime) -> np.ndarray:
    """UTC hour starts covering [start, now)."""
    first = to_np(start).astype("datetime64[h]")
    return np.arange(first, to_np(now), HOUR).astype("datetime64[us]")


def traffic_shape(hours: np.ndarray) -> np.ndarray:
    """Relative load per hour (about 1 on an average off-season weekday)."""
    local = pd.DatetimeIndex(hours).tz_localize(UTC).tz_convert(DEMO_TZ)
    season = np.where(np.isin(local.month, list(PEAK_MONTHS)), _SEASON[True], _SEASON[False])
    return _DIURNAL[local.hour] * _WEEKDAY[local.day_of_week] * season


def shape_at(instants: np.ndarray, hours: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The hourly shape value of the hour each instant falls in."""
    index = ((instants - hours[0]) // HOUR).astype(np.int64)
    return shape[np.clip(index, 0, len(shape) - 1)]


def spread_events(
    hours: np.ndarray,
    per_hour: np.ndarray,
    start: datetime,
    now: datetime,
    rng: np.random.Generator,
) -> np.ndarray:
    """Poisson arrivals with the given mean per hour, sorted, inside [start, now)."""
    counts = rng.poisson(per_hour)
    offsets = (rng.random(int(counts.sum())) * 3_600_000_000).astype("timedelta64[us]")
    instants = np.repeat(hours, counts) + offsets
    instants = instants[(instants >= to_np(start)) & (instants < to_np(now))]
    return np.sort(instants)


@dataclass(frozen=True)
class Spell:
    """A bad stretch of time the demo platform went through."""

    name: str
    start: np.datetime64
    end: np.datetime64

    def covers(self, instants: np.ndarray) -> np.ndarray:
        return (instants >= self.start) & (instants < self.end)


def _local_spell(name: str, day: date, start: time, minutes: int) -> Spell:
    begin = datetime.combine(day, start, tzinfo=DEMO_TZ)
    return Spell(name, to_np(begin), to_np(begin + timedelta(minutes=minutes)))


def bad_spells(now: datetime) -> dict[str, Spell]:
    """The incidents baked into the data, placed relative to `now`."""
    today = now.astimezone(DEMO_TZ).date()
    week_ago = today - timedelta(days=7)
    last_saturday = week_ago - timedelta(days=(week_ago.weekday() - 5) % 7)
    regression_start = now - timedelta(minutes=100)
    # The latest Saturday before today (a week back when today is a Saturday).
    saturday = today - timedelta(days=(today.weekday() - 5) % 7 or 7)
    return {
        # A missing index after a migration: every database-heavy endpoint crawls for an hour.
        "slow_database": _local_spell("slow_database", today - timedelta(days=3), time(14), 60),
        # The payment provider failed on a wedding-day evening: charges time out or get 502s.
        "payment_outage": _local_spell("payment_outage", last_saturday, time(18, 40), 90),
        # The photo storage provider throttled uploads on a wedding-day afternoon.
        "photo_slowdown": _local_spell("photo_slowdown", saturday, time(15), 60),
        # A form-builder release broke submissions with file fields until it was rolled back.
        "form_failures": _local_spell("form_failures", today - timedelta(days=5), time(19, 30), 60),
        # Still going on: a new search ranking release made supplier search slower.
        "search_regression": Spell(
            "search_regression", to_np(regression_start), to_np(now + timedelta(days=1))
        ),
    }
