"""PromQL functions that work on labels or buckets: `histogram_quantile` (classic `_bucket`
series with `le`), `label_replace`, `label_join`, and the calendar functions."""

from __future__ import annotations

import calendar
import functools
import math
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import re2

from monitoring_core.prometheus.promql.model import (
    NAME,
    Labels,
    QueryError,
    Scalar,
    Series,
    Vector,
    drop_name,
    with_label,
)

__all__ = ["DATE_FUNCTIONS", "date_function", "histogram_quantile", "label_join", "label_replace"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus 2.42 `bucketQuantile` over (upper bound, cumulative count) pairs."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return math.nan
    merged: list[list[float]] = []
    for upper, count in buckets:  # coalesceBuckets: one bucket per upper bound
        if merged and merged[-1][0] == upper:
            merged[-1][1] += count
        else:
            merged.append([upper, count])
    highest = -math.inf
    for bucket in merged:  # ensureMonotonic
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def histogram_quantile(q: Scalar, vector: Vector) -> Vector:
    """φ-quantile per label set (less `le` and the name) at every step."""
    groups: dict[Labels, list[tuple[float, Series]]] = defaultdict(list)
    for s in vector.series:
        le = dict(s.labels).get("le")
        if le is None:
            continue
        try:
            upper = float(le)
        except ValueError:
            continue
        groups[tuple(p for p in s.labels if p[0] not in ("le", NAME))].append((upper, s))
    out = []
    for labels, members in groups.items():
        present = np.zeros(len(q.values), bool)
        for _, s in members:
            present |= s.present
        values = np.full(len(q.values), math.nan)
        for step in np.flatnonzero(present).tolist():
            buckets = [(u, float(s.values[step])) for u, s in members if s.present[step]]
            values[step] = bucket_quantile(float(q.values[step]), buckets)
        out.append(Series(labels, values, present))
    return Vector(out)


@functools.lru_cache(maxsize=256)
def _anchored(pattern: str) -> Any:
    try:
        return re2.compile(f"^(?:{pattern})$", options=_OPTIONS)
    except re2.error:
        raise QueryError(f"invalid regular expression in label_replace(): {pattern!r}") from None


_TEMPLATE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _expand(template: str, match: Any, names: dict[str, int]) -> str:
    """Go's Regexp.Expand: `$1`, `${1}`, `$name`; an unknown group expands to ''."""

    def one(found: re.Match[str]) -> str:
        key = found.group(1) or found.group(2)
        index = int(key) if key.isdigit() else names.get(key)
        if index is None or index > len(match.groups()):
            return ""
        return match.group(index) or ""

    return _TEMPLATE.sub(one, template.replace("$$", "\x00")).replace("\x00", "$")


def label_replace(vector: Vector, dst: str, replacement: str, src: str, regex: str) -> Vector:
    if not _LABEL_NAME.fullmatch(dst):
        raise QueryError(f"invalid destination label name in label_replace(): {dst!r}")
    compiled = _anchored(regex)
    names = dict(compiled.groupindex)
    out = []
    for s in vector.series:
        found = compiled.match(dict(s.labels).get(src, ""))
        labels = s.labels
        if found is not None:
            labels = with_label(labels, dst, _expand(replacement, found, names))
        out.append(Series(labels, s.values, s.present))
    return Vector(out).check_unique()


def label_join(vector: Vector, dst: str, separator: str, sources: list[str]) -> Vector:
    if not _LABEL_NAME.fullmatch(dst):
        raise QueryError(f"invalid destination label name in label_join(): {dst!r}")
    out = []
    for s in vector.series:
        current = dict(s.labels)
        joined = separator.join(current.get(name, "") for name in sources)
        out.append(Series(with_label(s.labels, dst, joined), s.values, s.present))
    return Vector(out).check_unique()


def _field(name: str, moment: datetime) -> float:
    if name == "minute":
        return moment.minute
    if name == "hour":
        return moment.hour
    if name == "day_of_week":
        return (moment.weekday() + 1) % 7  # Sunday is 0
    if name == "day_of_month":
        return moment.day
    if name == "day_of_year":
        return moment.timetuple().tm_yday
    if name == "days_in_month":
        return calendar.monthrange(moment.year, moment.month)[1]
    if name == "month":
        return moment.month
    return moment.year


DATE_FUNCTIONS = frozenset(
    {
        "minute",
        "hour",
        "day_of_week",
        "day_of_month",
        "day_of_year",
        "days_in_month",
        "month",
        "year",
    }
)


def date_function(name: str, vector: Vector) -> Vector:
    out = []
    for s in vector.series:
        values = np.full(len(s.values), math.nan)
        for i in np.flatnonzero(s.present).tolist():
            seconds = float(s.values[i])
            try:
                values[i] = _field(name, datetime.fromtimestamp(int(seconds), tz=UTC))
            except (OverflowError, ValueError, OSError):  # NaN, ±Inf, beyond year 9999: NaN
                continue
        out.append(Series(drop_name(s.labels), values, s.present))
    return Vector(out).check_unique()
