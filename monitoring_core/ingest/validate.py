"""Item validation shared by every ingest route: errors name the item index and the field.

Accepted numbers (every number an ingest route stores goes through `ItemChecker.number`):

- finite, and |value| <= MAX_MAGNITUDE = 2^53 (9,007,199,254,740,992, about 9e15) unless a
  field says less: the largest range in which float8 holds every integer exactly, so counters
  round-trip to the unit; a byte counter of 8 PB fits, and larger values are unit mistakes or
  attacks. The bound is what keeps rollups safe: a 1-minute, 1-hour or 1-day float8 sum
  overflows ("value out of range: overflow") only past 1.8e308, which two points of 1e308
  reach but points within 2^53 never will (it would take 1e292 of them).
- response times (`response_time_ms`, `database_query_time_ms`, `external_api_time_ms`):
  0 to MAX_DURATION_MS (one day in ms): a request answered after a day is not a timing.
- Web Vitals `value`: 0 to MAX_DURATION_MS too (LCP/FCP/INP/TTFB are ms; CLS is far below).
- integers (`status_code` …) within the bounds each field names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_DURATION_MS",
    "MAX_MAGNITUDE",
    "InvalidItems",
    "ItemChecker",
    "ItemError",
    "Limits",
    "check_keys",
    "json_type",
    "parse_timestamp",
]


@dataclass(frozen=True)
class ItemError:
    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidItems(ValueError):
    """A batch with at least one bad item: the API answers 422 and stores nothing."""

    def __init__(self, errors: Iterable[ItemError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"[{e.index}] {e.field}: {e.message}" for e in self.errors))


@dataclass(frozen=True)
class Limits:
    """Accepted time window for item timestamps: [oldest, newest]."""

    oldest: datetime
    newest: datetime


def check_keys(item: Mapping[str, Any], allowed: frozenset[str], index: int) -> list[ItemError]:
    """One error per key the item may not carry (a typo must not be silently dropped)."""
    return [
        ItemError(index, key, f"unknown field {key!r}; allowed: {', '.join(sorted(allowed))}")
        for key in item
        if key not in allowed
    ]


MAX_MAGNITUDE = float(2**53)  # see the module docstring
MAX_DURATION_MS = 86_400_000.0  # one day

# Epoch numbers above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11


def parse_timestamp(value: Any, *, default: datetime) -> datetime:
    """ISO 8601 text (with offset; naive means UTC) or epoch seconds/milliseconds, as UTC."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or epoch seconds/milliseconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch {value!r} is out of range") from exc
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    raise ValueError("must be an ISO 8601 time or epoch seconds/milliseconds")


_MAX_REPORTED = 100


class ItemChecker:
    """Collects the errors of one batch; each helper returns the clean value or None."""

    def __init__(self, limits: Limits, default_time: datetime) -> None:
        self.limits = limits
        self.default_time = default_time
        self.errors: list[ItemError] = []

    def fail(self, index: int | None, field: str, message: str) -> None:
        self.errors.append(ItemError(index, field, message))

    def raise_if_any(self) -> None:
        if self.errors:
            shown = self.errors[:_MAX_REPORTED]
            if len(self.errors) > _MAX_REPORTED:
                more = len(self.errors) - _MAX_REPORTED
                shown.append(ItemError(None, "", f"... and {more} more errors"))
            raise InvalidItems(shown)

    def keys(self, item: Mapping[str, Any], allowed: frozenset[str], index: int) -> None:
        if not item.keys() <= allowed:
            self.errors.extend(check_keys(item, allowed, index))

    def text(
        self,
        item: Mapping[str, Any],
        index: int,
        key: str,
        *,
        required: bool = False,
        max_len: int = 200,
    ) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                self.fail(index, key, "is required")
            return None
        if not isinstance(value, str):
            self.fail(index, key, f"must be a string, got {json_type(value)}")
            return None
        if required and not value.strip():
            self.fail(index, key, "must not be empty")
            return None
        if len(value) > max_len:
            self.fail(index, key, f"is longer than {max_len} characters")
            return None
        if "\x00" in value:
            self.fail(index, key, "must not contain NUL characters")
            return None
        return value

    def number(
        self,
        item: Mapping[str, Any],
        index: int,
        key: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float = MAX_MAGNITUDE,
    ) -> float | None:
        """The value as a float when finite and within [minimum or -maximum, maximum]."""
        value = item.get(key)
        if value is None:
            if required:
                self.fail(index, key, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(index, key, f"must be a number, got {json_type(value)}")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.fail(index, key, "must be a finite number")
            return None
        if minimum is not None and number < minimum:
            self.fail(index, key, f"must be >= {minimum:g}")
            return None
        if not -maximum <= number <= maximum:
            low = -maximum if minimum is None else minimum
            self.fail(index, key, f"must be between {low:.16g} and {maximum:.16g}")
            return None
        return number

    def integer(
        self, item: Mapping[str, Any], index: int, key: str, *, low: int, high: int
    ) -> int | None:
        value = item.get(key)
        if value is None:
            self.fail(index, key, "is required")
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(index, key, f"must be an integer, got {json_type(value)}")
            return None
        if not low <= value <= high:
            self.fail(index, key, f"must be between {low} and {high}")
            return None
        return value

    def boolean(self, item: Mapping[str, Any], index: int, key: str) -> bool | None:
        value = item.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.fail(index, key, f"must be true or false, got {json_type(value)}")
        return None

    def time(self, item: Mapping[str, Any], index: int, key: str = "timestamp") -> datetime | None:
        try:
            moment = parse_timestamp(item.get(key), default=self.default_time)
        except ValueError as exc:
            self.fail(index, key, str(exc))
            return None
        if moment < self.limits.oldest:
            self.fail(
                index,
                key,
                f"{moment.isoformat()} is older than the oldest stored day "
                f"({self.limits.oldest:%Y-%m-%d})",
            )
            return None
        if moment > self.limits.newest:
            self.fail(index, key, f"{moment.isoformat()} is too far in the future")
            return None
        return moment


_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)
