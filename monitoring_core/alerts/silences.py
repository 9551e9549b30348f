"""Silences and maintenance windows: Alertmanager-style matchers with a validity range, and
optional weekly recurrence in the business time zone (e.g. deploys Tuesdays 02:00–03:00).

A silence only stops notifications; evaluation still records every state change.

Regex matchers run on RE2 (google-re2): linear time in the label's length whatever the
pattern, so a matcher like `(a|aa)+` cannot hold the alert job. Patterns RE2 does not accept
(backreferences, lookaround) are refused when the silence is made.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import re2
from sqlalchemy import Connection, delete, func, insert, select, update

from monitoring_core.schema import silences

__all__ = [
    "alert_labels",
    "create_silence",
    "delete_silence",
    "end_silence",
    "is_active",
    "is_silenced",
    "list_silences",
    "matches",
    "regex_problem",
    "validate_silence",
]

log = logging.getLogger(__name__)
MAX_PATTERN_CHARS = 1000
_RE2 = re2.Options()
_RE2.log_errors = False  # a refused pattern is a 422, not a line on stderr


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, options=_RE2)


def regex_problem(pattern: str) -> str | None:
    """Why RE2 will not take this pattern, or None."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"regex longer than {MAX_PATTERN_CHARS} characters"
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return f"bad regex (RE2 syntax, no backreferences or lookaround): {text}"
    return None


def alert_labels(
    *, rule_id: int, alert_name: str, severity: str, service: str | None, dimensions: Mapping
) -> dict[str, str]:
    """The labels a silence's matchers are compared with."""
    labels = {str(k): str(v) for k, v in dimensions.items()}
    labels.update(alertname=alert_name, rule_id=str(rule_id), severity=severity)
    if service:
        labels.setdefault("service", service)
    return labels


def matches(matchers: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> bool:
    """Every matcher agrees (equality, or a full regex match when `is_regex`)."""
    for m in matchers:
        value = labels.get(str(m.get("name")), "")
        if m.get("is_regex"):
            if not _full_match(str(m.get("value", "")), value):
                return False
        elif value != str(m.get("value", "")):
            return False
    return True


def _full_match(pattern: str, value: str) -> bool:
    if regex_problem(pattern):  # stored before RE2: such a matcher matches nothing
        log.warning("silence matcher %r is not an RE2 pattern; it matches nothing", pattern)
        return False
    return _compiled(pattern).fullmatch(value) is not None


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _in_window(recurrence: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    local = now.astimezone(tz)
    weekdays = recurrence.get("weekdays", [recurrence.get("weekday")])
    start, end = _clock(recurrence["start"]), _clock(recurrence["end"])
    if start <= end:
        return local.weekday() in weekdays and start <= local.time() < end
    # crosses midnight: the late part belongs to the named weekday, the early part to the next
    late = local.weekday() in weekdays and local.time() >= start
    early = (local.weekday() - 1) % 7 in weekdays and local.time() < end
    return late or early


def is_active(silence: Mapping[str, Any], now: datetime, tz: ZoneInfo) -> bool:
    """Within [starts_at, ends_at) and, when recurring, inside this week's window."""
    if not silence["starts_at"] <= now < silence["ends_at"]:
        return False
    recurrence = silence.get("recurrence")
    return True if not recurrence else _in_window(recurrence, now, tz)


def is_silenced(
    active: Iterable[Mapping[str, Any]], labels: Mapping[str, str], now: datetime, tz: ZoneInfo
) -> bool:
    """Whether any of these silences covers an alert with these labels now."""
    return any(is_active(s, now, tz) and matches(s["matchers"], labels) for s in active)


def validate_silence(
    matchers: Any, starts_at: datetime, ends_at: datetime, recurrence: Any
) -> list[dict[str, str]]:
    """Problems as {field, message}; empty when the silence can be stored."""
    problems = []
    if not isinstance(matchers, list) or not all(
        isinstance(m, dict) and m.get("name") and "value" in m for m in matchers
    ):
        problems.append({"field": "matchers", "message": "must be a list of {name, value}"})
    else:
        for m in matchers:
            if m.get("is_regex") and (problem := regex_problem(str(m["value"]))):
                problems.append({"field": "matchers", "message": problem})
    if ends_at <= starts_at:
        problems.append({"field": "ends_at", "message": "must be after starts_at"})
    if recurrence:
        try:
            days = recurrence.get("weekdays", [recurrence.get("weekday")])
            if not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
                raise ValueError("weekday out of range")
            _clock(recurrence["start"]), _clock(recurrence["end"])
        except (AttributeError, KeyError, TypeError, ValueError):
            problems.append(
                {"field": "recurrence", "message": "must be {weekday 0-6, start HH:MM, end HH:MM}"}
            )
    return problems


def create_silence(
    conn: Connection,
    *,
    matchers: list[dict[str, Any]],
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    created_by: str,
    recurrence: dict[str, Any] | None = None,
) -> int:
    """Store a validated silence (ValueError listing problems otherwise)."""
    problems = validate_silence(matchers, starts_at, ends_at, recurrence)
    if problems:
        raise ValueError("; ".join(f"{p['field']}: {p['message']}" for p in problems))
    return int(
        conn.execute(
            insert(silences)
            .values(
                matchers=matchers,
                starts_at=starts_at,
                ends_at=ends_at,
                recurrence=recurrence,
                reason=reason,
                created_by=created_by,
            )
            .returning(silences.c.id)
        ).scalar_one()
    )


def list_silences(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """All silences, or only those not yet ended at `now`."""
    query = select(silences).order_by(silences.c.starts_at)
    if now is not None:
        query = query.where(silences.c.ends_at > now)
    return [dict(r._mapping) for r in conn.execute(query)]


def delete_silence(conn: Connection, *, silence_id: int) -> bool:
    return bool(conn.execute(delete(silences).where(silences.c.id == silence_id)).rowcount)


def end_silence(conn: Connection, *, silence_id: int, now: datetime) -> bool:
    """Make a silence end at `now` (one not started yet ends before it starts); False when no
    silence with that id is still running."""
    stmt = (
        update(silences)
        .where(silences.c.id == silence_id, silences.c.ends_at > now)
        .values(starts_at=func.least(silences.c.starts_at, now), ends_at=now)
    )
    return bool(conn.execute(stmt).rowcount)
