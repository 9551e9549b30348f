"""Item validation shared by every ingest route: errors name the item index and the field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "InvalidItems",
    "ItemError",
    "Limits",
    "check_keys",
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

    @classmethod
    def around(cls, now: datetime, *, oldest: datetime, future: timedelta) -> Limits:
        return cls(oldest=oldest, newest=now + future)


def check_keys(item: Mapping[str, Any], allowed: frozenset[str], index: int) -> list[ItemError]:
    """One error per key the item may not carry (a typo must not be silently dropped)."""
    return [
        ItemError(index, key, f"unknown field {key!r}; allowed: {', '.join(sorted(allowed))}")
        for key in item
        if key not in allowed
    ]


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
