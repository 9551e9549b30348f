"""Bodies of the on-call API and Settings forms: people, schedules with layers, overrides,
default routes. Each parser returns storable values or raises OncallInvalid naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitoring_core.enums import Severity
from monitoring_core.oncall.rules import ROTATIONS, WEEKLY
from monitoring_core.outbound import literal_refusal

__all__ = [
    "TARGET_KINDS",
    "OncallInvalid",
    "OncallNotFound",
    "parse_contact",
    "parse_layer",
    "parse_override",
    "parse_route",
    "parse_schedule",
    "parse_targets",
    "parse_time_zone",
]

TARGET_KINDS = ("channels", "users", "schedules")
MAX_LAYERS, MAX_MEMBERS, MAX_TEXT = 10, 100, 200


class OncallInvalid(ValueError):
    """A body that cannot be stored; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class OncallNotFound(LookupError):
    pass


def _text(body: Mapping[str, Any], field: str, *, required: bool = False) -> str:
    value = body.get(field, "")
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT:
        raise OncallInvalid(field, f"must be text of at most {MAX_TEXT} characters")
    if required and not value.strip():
        raise OncallInvalid(field, "is required")
    return value.strip()


def _ids(value: Any, field: str) -> list[int]:
    ok = isinstance(value, list) and len(value) <= MAX_MEMBERS
    if not ok or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value):
        raise OncallInvalid(field, f"must be a list of at most {MAX_MEMBERS} ids")
    return list(value)


def parse_time_zone(value: Any) -> str | None:
    """An IANA zone name (None clears it: the person follows the business time zone)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and "\x00" not in value and len(value) <= 64:
            ZoneInfo(value)
            return value
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory
        pass
    raise OncallInvalid("time_zone", "must be an IANA time zone name, e.g. Europe/London")


def parse_contact(body: Mapping[str, Any]) -> tuple[str, str]:
    """(label, Apprise URL): the URL is checked by Apprise when stored; a literal address the
    outbound policy always refuses (cloud metadata, link-local) is refused here."""
    label = _text(body, "label") or "contact"
    url = body.get("url")
    if not isinstance(url, str) or "\x00" in url or not url.strip():
        raise OncallInvalid("url", "is required (an Apprise URL)")
    host = urlsplit(url.strip()).hostname or ""
    if host and (reason := literal_refusal(host)):
        raise OncallInvalid("url", f"refused by the outbound policy: {reason}")
    return label, url.strip()


def _time(value: Any) -> time:
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise OncallInvalid("handoff_time", "must be HH:MM in the business time zone")


def _date(value: Any, field: str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise OncallInvalid(field, "must be a date, YYYY-MM-DD")


def _weekdays(value: Any, field: str) -> list[int]:
    ok = isinstance(value, list) and all(isinstance(d, int) and 0 <= d <= 6 for d in value)
    if not ok:
        raise OncallInvalid(field, "must be a list of weekdays 0 (Monday) .. 6 (Sunday)")
    return sorted(set(value))


def parse_layer(raw: Any, index: int) -> dict[str, Any]:
    """One layer `{name?, level?, rotation, handoff_time?, handoff_weekday?, starts_on,
    members, active_days?}` as column values."""
    where = f"layers[{index}]"
    if not isinstance(raw, Mapping):
        raise OncallInvalid(where, "must be an object")
    rotation = raw.get("rotation", WEEKLY)
    if rotation not in ROTATIONS:
        raise OncallInvalid(f"{where}.rotation", "must be daily or weekly")
    level = raw.get("level", index + 1)
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 100:
        raise OncallInvalid(f"{where}.level", "must be a whole number 1..100")
    weekday = raw.get("handoff_weekday")
    if weekday is not None and (isinstance(weekday, bool) or weekday not in range(7)):
        raise OncallInvalid(f"{where}.handoff_weekday", "must be 0 (Monday) .. 6 (Sunday)")
    members = _ids(raw.get("members"), f"{where}.members")
    if not members:
        raise OncallInvalid(f"{where}.members", "needs at least one person")
    return {
        "name": _text(raw, "name") or f"Layer {index + 1}",
        "level": level,
        "rotation": rotation,
        "handoff_time": _time(raw.get("handoff_time", "09:00")),
        "handoff_weekday": weekday if rotation == WEEKLY else None,
        "starts_on": _date(raw.get("starts_on"), f"{where}.starts_on"),
        "members": members,
        "active_days": _weekdays(raw.get("active_days", []), f"{where}.active_days"),
    }


def parse_schedule(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(schedule values, layer values) from `{name, description?, layers: [...]}`."""
    layers = body.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise OncallInvalid("layers", f"must be a list of 1..{MAX_LAYERS} layers")
    values = {"name": _text(body, "name", required=True), "description": _text(body, "description")}
    return values, [parse_layer(raw, i) for i, raw in enumerate(layers)]


def _instant(value: Any, field: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise OncallInvalid(field, "must be an ISO 8601 time with an offset")


def parse_override(body: Mapping[str, Any]) -> dict[str, Any]:
    """`{user_id, starts_at, ends_at, reason?}` as column values (ends after it starts)."""
    user_id = body.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise OncallInvalid("user_id", "must be a user id")
    starts, ends = (
        _instant(body.get("starts_at"), "starts_at"),
        _instant(body.get("ends_at"), "ends_at"),
    )
    if ends <= starts:
        raise OncallInvalid("ends_at", "must be after starts_at")
    return {
        "user_id": user_id,
        "starts_at": starts,
        "ends_at": ends,
        "reason": _text(body, "reason"),
    }


def parse_targets(raw: Any, field: str = "targets") -> dict[str, list[int]]:
    """`{channels?, users?, schedules?}` (lists of ids), at least one target."""
    if not isinstance(raw, Mapping) or set(raw) - set(TARGET_KINDS):
        raise OncallInvalid(field, "must be {channels?, users?, schedules?} lists of ids")
    targets = {kind: _ids(raw.get(kind, []), f"{field}.{kind}") for kind in TARGET_KINDS}
    if not any(targets.values()):
        raise OncallInvalid(field, "needs at least one channel, user or schedule")
    return targets


def parse_route(body: Mapping[str, Any]) -> tuple[str, dict[str, list[int]]]:
    """(min_severity, targets) from `{min_severity, targets}`."""
    severity = body.get("min_severity")
    if severity not in {s.value for s in Severity}:
        raise OncallInvalid("min_severity", "must be critical, high, medium, low or info")
    return str(severity), parse_targets(body.get("targets"))
