"""Group lifecycle decisions: regression (release-aware), status changes by people."""

from __future__ import annotations

import re
from datetime import datetime

from monitoring_core.enums import ErrorGroupStatus

__all__ = [
    "TRANSITIONS",
    "compare_releases",
    "is_regression",
    "next_status",
]

_PART = re.compile(r"\d+|[A-Za-z]+")
# What a responder may do to a group, by action: allowed from-statuses and the new status.
TRANSITIONS: dict[str, tuple[frozenset[str], ErrorGroupStatus]] = {
    "resolve": (
        frozenset({"unresolved", "regressed", "ignored"}),
        ErrorGroupStatus.RESOLVED,
    ),
    "ignore": (frozenset({"unresolved", "regressed", "resolved"}), ErrorGroupStatus.IGNORED),
    "reopen": (frozenset({"resolved", "ignored", "regressed"}), ErrorGroupStatus.UNRESOLVED),
}


def _version_key(release: str) -> tuple[tuple[int, int | str], ...] | None:
    version = release.rsplit("@", 1)[-1]  # Sentry's "package@1.2.3"
    parts = _PART.findall(version)
    if not parts or not parts[0].isdigit():
        return None
    # Numbers compare as numbers; a pre-release word sorts before the plain version.
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


def compare_releases(a: str, b: str) -> int | None:
    """-1, 0 or 1 when both look like versions (of the same package), else None."""
    if a == b:
        return 0
    if "@" in a and "@" in b and a.rsplit("@", 1)[0] != b.rsplit("@", 1)[0]:
        return None
    ka, kb = _version_key(a), _version_key(b)
    if ka is None or kb is None:
        return None
    # Pad so that 1.2 == 1.2.0.
    width = max(len(ka), len(kb))
    ka += ((1, 0),) * (width - len(ka))
    kb += ((1, 0),) * (width - len(kb))
    return (ka > kb) - (ka < kb)


def is_regression(
    *,
    status: str,
    resolved_at: datetime | None,
    resolved_in_release: str | None,
    event_time: datetime,
    event_release: str | None,
) -> bool:
    """Whether an event makes a resolved group a regression.

    Not when it happened before the resolution (a late arrival), nor when it comes from a
    release older than the one the fix shipped in (old clients still running).
    """
    if status != ErrorGroupStatus.RESOLVED:
        return False
    if resolved_at is not None and event_time <= resolved_at:
        return False
    if resolved_in_release and event_release:
        order = compare_releases(event_release, resolved_in_release)
        if order is not None and order < 0:
            return False
    return True


def next_status(current: str, action: str) -> ErrorGroupStatus:
    """The status after a responder's action; ValueError when it does not apply."""
    if action not in TRANSITIONS:
        raise ValueError(f"action must be one of {', '.join(TRANSITIONS)}, got {action!r}")
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise ValueError(f"cannot {action} a group that is {current}")
    return target
