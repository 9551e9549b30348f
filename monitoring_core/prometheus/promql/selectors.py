"""Series selection (the four label matchers) over `metric_series`, and raw samples through
the one points reader (`points_reader.read_points`).

A stored series' labels are its dimensions plus `__name__` = its metric name. Equality
matchers narrow the SQL (name, JSONB containment); every matcher is then applied exactly,
regexes fully anchored and run by RE2 (Go's regex dialect, as Prometheus uses).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import re2
from sqlalchemy import Connection, text

from monitoring_core import points_reader
from monitoring_core.points_reader import iter_points_us
from monitoring_core.prometheus.promql.model import (
    NAME,
    Budget,
    Labels,
    QueryError,
    Raw,
    labels_of,
)
from monitoring_core.prometheus.staleness import read_markers

__all__ = ["Matcher", "find_series", "iter_raw", "load_raw", "matches"]

MAX_SERIES = 50_000  # series one selector may touch
LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    try:
        return re2.compile(f"^(?:{pattern})$", options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text_ = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise QueryError(f"invalid regular expression {pattern!r}: {text_}") from None


def _one(matcher: Matcher, value: str) -> bool:
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    hit = _regex(matcher.value).match(value) is not None
    return hit if matcher.op == "=~" else not hit


def matches(matchers: Sequence[Matcher], labels: dict[str, str]) -> bool:
    """All matchers hold (a missing label has the value "")."""
    return all(_one(m, labels.get(m.name, "")) for m in matchers)


def _names(conn: Connection, matchers: Sequence[Matcher]) -> list[str] | None:
    """The metric names the matchers allow, or None when they do not restrict the name."""
    on_name = [m for m in matchers if m.name == NAME]
    equal = [m.value for m in on_name if m.op == "="]
    if equal:
        return equal[:1]
    if not on_name:
        return None
    every = conn.execute(text("SELECT DISTINCT name FROM metric_series")).scalars()
    return [name for name in every if all(_one(m, name) for m in on_name)]


def find_series(conn: Connection, matchers: Sequence[Matcher]) -> list[tuple[int, Labels]]:
    """(series id, labels) of every stored series the matchers select."""
    names = _names(conn, matchers)
    if names is not None and not names:
        return []
    contains = {m.name: m.value for m in matchers if m.op == "=" and m.name != NAME and m.value}
    sql = "SELECT id, name, dimensions FROM metric_series WHERE true"
    params: dict[str, Any] = {}
    if names is not None:
        sql += " AND name = ANY(CAST(:names AS text[]))"
        params["names"] = names
    if contains:
        sql += " AND dimensions @> CAST(:contains AS jsonb)"
        params["contains"] = orjson.dumps(contains).decode()
    found = []
    for row in conn.execute(text(sql), params):
        labels = {str(k): str(v) for k, v in (row.dimensions or {}).items()}
        labels[NAME] = row.name
        if matches(matchers, labels):
            found.append((int(row.id), labels_of(labels)))
            if len(found) > MAX_SERIES:
                raise QueryError(f"the selector matches more than {MAX_SERIES} series")
    return found


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iter_raw(
    conn: Connection,
    series: Sequence[tuple[int, Labels]],
    start_ms: int,
    end_ms: int,
    *,
    budget: Budget,
    markers: bool = False,
    keep: bool = False,
    steps: int = 1,
) -> Iterator[list[Raw]]:
    """Samples with start_ms <= t <= end_ms (both ends closed, as Prometheus 2.x reads), a
    batch of series at a time in the order given (the points reader's batches); with
    `markers`, each series' staleness markers in the same span too. A batch's samples count
    against `budget` while the caller holds it (for good with `keep`). A batch holds at most
    BATCH_POINTS / `steps` series: what the caller derives per series and step stays
    bounded too."""
    if not series or end_ms < start_ms or end_ms < 0:
        return
    start_ms, end_ms = max(start_ms, 0), min(end_ms, LATEST_MS)  # datetime's range, no data beyond
    labels = dict(series)
    stale = read_markers(conn, list(labels), _moment(start_ms), _moment(end_ms)) if markers else {}
    # read_points spans (start, end]: one millisecond earlier includes a sample at start_ms
    # (remote-written times are whole milliseconds).
    batches = iter_points_us(
        conn,
        list(labels),
        _moment(start_ms - 1),
        _moment(end_ms),
        max_series=points_reader.BATCH_POINTS // max(1, steps),
    )
    for batch, points in batches:
        out, total = [], 0
        for sid in batch:
            got = points.pop(sid, None)
            if got is None:
                continue
            t = got[0]  # the reader's own arrays, one per series: converted in place
            np.add(t, 500, out=t)
            np.floor_divide(t, 1000, out=t)  # µs to the nearest ms
            first = int(np.searchsorted(t, start_ms))  # ascending: only the first few are early
            t, v = t[first:], got[1][first:]
            if len(t):
                total += len(t)
                out.append(Raw(labels[sid], t, np.asarray(v, dtype=np.float64), stale.get(sid)))
        del points
        budget.take(total)
        yield out
        del out
        if not keep:
            budget.give(total)


def load_raw(
    conn: Connection,
    series: Sequence[tuple[int, Labels]],
    start_ms: int,
    end_ms: int,
    *,
    budget: Budget,
    markers: bool = False,
) -> list[Raw]:
    """All of `iter_raw`'s batches at once (their samples stay counted against `budget`)."""
    out: list[Raw] = []
    for batch in iter_raw(
        conn, series, start_ms, end_ms, budget=budget, markers=markers, keep=True
    ):
        out += batch
    return out
