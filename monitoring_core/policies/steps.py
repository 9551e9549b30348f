"""Escalation policy steps `{after_minutes, channels, users?, schedules?}`, climbed while nobody
acknowledges. A step pages channels, people (their contact methods) and schedules (whoever is
on call when the step is sent; `oncall.routing` resolves them).

Pure decisions shared by alert and incident escalation; `policies.store` reads and writes the
policies and chooses which one applies (`policy_for`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "Step",
    "due_steps",
    "parse_steps",
    "step_due_at",
]


@dataclass(frozen=True)
class Step:
    after_minutes: float
    channels: tuple[int, ...]
    users: tuple[int, ...] = ()  # each user's contact methods
    schedules: tuple[int, ...] = ()  # whoever is on call on the schedule when the step is sent

    def targets(self) -> dict[str, list[int]]:
        return {
            "channels": list(self.channels),
            "users": list(self.users),
            "schedules": list(self.schedules),
        }


def _ids(item: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    value = item.get(key, [])
    ok = isinstance(value, list)
    if not ok or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{key} must be a list of {what} ids")
    return tuple(value)


def parse_steps(raw: Any) -> list[Step]:
    """Steps sorted by `after_minutes`; ValueError for anything else than the documented shape."""
    if not isinstance(raw, list):
        raise ValueError("steps must be a list")
    steps = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise ValueError("each step must be {after_minutes, channels?, users?, schedules?}")
        after = item.get("after_minutes")
        if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
            raise ValueError("after_minutes must be a number >= 0")
        steps.append(
            Step(
                float(after),
                _ids(item, "channels", "channel"),
                _ids(item, "users", "user"),
                _ids(item, "schedules", "schedule"),
            )
        )
    return sorted(steps, key=lambda s: s.after_minutes)


def step_due_at(
    steps: Sequence[Step], index: int, *, start: datetime, repeat: bool
) -> datetime | None:
    """When the index-th notification of the climb is due (None: the policy is exhausted).

    With `repeat`, the climb starts over after the last step, each round as long as the
    last step's delay (a policy whose last step is immediate cannot repeat).
    """
    if not steps:
        return None
    rounds, position = divmod(index, len(steps))
    period = steps[-1].after_minutes
    if rounds and (not repeat or period <= 0):
        return None
    return start + timedelta(minutes=rounds * period + steps[position].after_minutes)


def due_steps(
    steps: Sequence[Step], *, done: int, start: datetime, now: datetime, repeat: bool
) -> list[tuple[int, Step]]:
    """The steps (with their running index) whose time has come, after `done` already sent."""
    due: list[tuple[int, Step]] = []
    index = done
    while len(due) < len(steps) * 2:  # bound a long outage to two rounds per call
        at = step_due_at(steps, index, start=start, repeat=repeat)
        if at is None or at > now:
            break
        due.append((index, steps[index % len(steps)]))
        index += 1
    return due
