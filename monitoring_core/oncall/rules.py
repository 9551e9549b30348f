"""Who is on call: pure functions of layers, overrides, an instant and the business time zone.

A layer hands off at `handoff_time` (a wall-clock time in the business time zone) every day
(`daily`) or on `handoff_weekday` every week (`weekly`); its members take turns from
`starts_on`, the first member's first shift. Handoffs are computed on local dates, so across a
daylight-saving change the handoff stays at the same wall-clock time and that shift is an hour
shorter or longer. A layer may cover only some weekdays (`active_days`, e.g. a weekend layer).
At any instant an override wins (the newest one covering the instant), then the highest level
whose layer has someone on duty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "Layer",
    "OnCall",
    "Override",
    "Shift",
    "layer_shift",
    "members_of",
    "next_on_call",
    "on_call_at",
    "shifts_between",
]

DAILY, WEEKLY = "daily", "weekly"
ROTATIONS = (DAILY, WEEKLY)
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Layer:
    members: tuple[int, ...]
    rotation: str = WEEKLY
    handoff_time: time = time(9, 0)
    handoff_weekday: int | None = None  # weekly: 0 = Monday; None: starts_on's weekday
    starts_on: date = date(2024, 1, 1)
    level: int = 1
    active_days: frozenset[int] = field(default_factory=frozenset)  # empty: every day
    name: str = ""
    id: int = 0


@dataclass(frozen=True)
class Override:
    user_id: int
    starts_at: datetime
    ends_at: datetime
    id: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Shift:
    """One member's turn on one layer: [starts_at, ends_at)."""

    user_id: int
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class OnCall:
    """Who is on call over [starts_at, ends_at), and why (`source`: a layer's name or
    "override")."""

    user_id: int | None
    starts_at: datetime
    ends_at: datetime
    source: str


def _utc(day: date, wall: time, tz: ZoneInfo) -> datetime:
    # In UTC: aware datetimes sharing one tzinfo compare by wall clock, wrong in the
    # autumn's repeated hour.
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def _handoff(day: date, layer: Layer, tz: ZoneInfo) -> datetime:
    return _utc(day, layer.handoff_time, tz)


def _period(layer: Layer) -> int:
    return 7 if layer.rotation == WEEKLY else 1


def _first_handoff(layer: Layer) -> date:
    """The date of the first handoff on or after `starts_on` (weekly: on the handoff weekday)."""
    if layer.rotation != WEEKLY or layer.handoff_weekday is None:
        return layer.starts_on
    return layer.starts_on + timedelta(days=(layer.handoff_weekday - layer.starts_on.weekday()) % 7)


def layer_shift(layer: Layer, at: datetime, tz: ZoneInfo) -> Shift | None:
    """The member on this layer's turn at `at` (ignoring `active_days`); None before the
    rotation starts or without members."""
    if not layer.members:
        return None
    first, period = _first_handoff(layer), _period(layer)
    local_day = at.astimezone(tz).date()
    turns = (local_day - first).days // period
    day = first + timedelta(days=turns * period)
    if _handoff(day, layer, tz) > at:  # before today's (this week's) handoff: the previous turn
        turns -= 1
        day -= timedelta(days=period)
    if turns < 0:
        return None
    end = _handoff(day + timedelta(days=period), layer, tz)
    return Shift(layer.members[turns % len(layer.members)], _handoff(day, layer, tz), end)


def _covers(layer: Layer, at: datetime, tz: ZoneInfo) -> bool:
    return not layer.active_days or at.astimezone(tz).weekday() in layer.active_days


def on_call_at(
    layers: Sequence[Layer], overrides: Sequence[Override], at: datetime, tz: ZoneInfo
) -> tuple[int | None, str]:
    """(user id or None, source) at the instant `at`."""
    covering = [o for o in overrides if o.starts_at <= at < o.ends_at]
    if covering:
        return max(covering, key=lambda o: (o.id, o.starts_at)).user_id, "override"
    for layer in sorted(layers, key=lambda item: -item.level):
        if not _covers(layer, at, tz):
            continue
        shift = layer_shift(layer, at, tz)
        if shift is not None:
            return shift.user_id, layer.name or f"level {layer.level}"
    return None, ""


def _boundaries(
    layers: Sequence[Layer],
    overrides: Sequence[Override],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
) -> list[datetime]:
    """Every instant in (start, end) at which the answer may change."""
    found: set[datetime] = set()
    day = start.astimezone(tz).date() - _DAY
    last = end.astimezone(tz).date() + _DAY
    while day <= last:
        found.add(_utc(day, time(0), tz))  # active_days change at midnight
        found.update(_handoff(day, layer, tz) for layer in layers)
        day += _DAY
    found.update(o.starts_at for o in overrides)
    found.update(o.ends_at for o in overrides)
    return sorted(b for b in found if start < b < end)


def shifts_between(
    layers: Sequence[Layer],
    overrides: Sequence[Override],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
) -> list[OnCall]:
    """Who is on call over [start, end), as consecutive spans (one per change of person)."""
    spans: list[OnCall] = []
    edges = [start, *_boundaries(layers, overrides, start, end, tz), end]
    for begin, finish in zip(edges, edges[1:], strict=False):
        user_id, source = on_call_at(layers, overrides, begin, tz)
        if spans and spans[-1].user_id == user_id:
            spans[-1] = OnCall(user_id, spans[-1].starts_at, finish, spans[-1].source)
        else:
            spans.append(OnCall(user_id, begin, finish, source))
    return spans


def next_on_call(
    layers: Sequence[Layer],
    overrides: Sequence[Override],
    now: datetime,
    tz: ZoneInfo,
    horizon: timedelta = timedelta(days=35),
) -> tuple[OnCall, OnCall | None]:
    """The current span and the next one with someone else (None: no change within horizon)."""
    spans = shifts_between(layers, overrides, now, now + horizon, tz)
    return spans[0], (spans[1] if len(spans) > 1 else None)


def members_of(layers: Iterable[Layer]) -> set[int]:
    """Every user id that takes turns on any layer."""
    return {member for layer in layers for member in layer.members}
