"""The values a PromQL evaluation passes around, each over a whole grid of evaluation steps.

A range query evaluates every node once for all of its steps (numpy arrays indexed by step),
not once per step: `Vector` is a list of series each with a value and a `present` flag per
step (absent = no sample there; a present value may be NaN, as in Prometheus), `Scalar` one
value per step, `Matrix` raw samples (a range selector or a subquery) with integer
millisecond times. Labels are sorted tuples of (name, value) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_SAMPLES",
    "NAME",
    "Budget",
    "ExecutionError",
    "Labels",
    "Matrix",
    "QueryError",
    "Raw",
    "Scalar",
    "Series",
    "StringValue",
    "TooManySamples",
    "Unsupported",
    "Vector",
    "drop_name",
    "labels_of",
    "with_label",
]

NAME = "__name__"
Labels = tuple[tuple[str, str], ...]


class QueryError(ValueError):
    """A query that cannot be answered: `error_type` is Prometheus' errorType."""

    error_type = "bad_data"


class Unsupported(QueryError):
    """A valid query using something this evaluator does not implement (never a guess)."""


class ExecutionError(QueryError):
    """A query that fails while evaluating (duplicate series, many-to-many matching …)."""

    error_type = "execution"


# Samples one query may hold in memory at once (Prometheus' --query.max-samples, 50 M there;
# `MONITORING_PROMQL_MAX_SAMPLES` sets the API's, config.Settings). A raw sample takes 16
# bytes, a step value 9 (with the allocator's share, ~20): a query at this default grows the
# process by ~60-70 MB (bench/promql.py), one at a time per API process by default.
MAX_SAMPLES = 3_000_000


class TooManySamples(ExecutionError):
    """Past the sample budget: Prometheus' own message (an execution error, 422)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            "query processing would load too many samples into memory in query execution "
            f"(more than {limit:,} at once; MONITORING_PROMQL_MAX_SAMPLES): narrow the "
            "selector, shorten the range or raise the step"
        )


class Budget:
    """The samples a query holds at once: raw samples read (a batch of series at a time when
    streamed, all of them when kept) and the step values of the vectors it builds (series x
    steps). `take` past `limit` raises TooManySamples; `give` returns a batch's share."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.limit, self.held, self.peak = limit, 0, 0

    def take(self, count: int) -> None:
        self.held += count
        self.peak = max(self.peak, self.held)
        if self.held > self.limit:
            raise TooManySamples(self.limit)

    def give(self, count: int) -> None:
        self.held -= count


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def drop_name(labels: Labels) -> Labels:
    return tuple(pair for pair in labels if pair[0] != NAME)


def with_label(labels: Labels, name: str, value: str) -> Labels:
    rest = {k: v for k, v in labels if k != name}
    if value != "":
        rest[name] = value
    return labels_of(rest)


@dataclass
class Series:
    labels: Labels
    values: np.ndarray  # float64, one per step
    present: np.ndarray  # bool, one per step


@dataclass
class Vector:
    series: list[Series] = field(default_factory=list)

    def check_unique(self) -> Vector:
        """Prometheus refuses a vector holding two series with one label set."""
        seen: dict[Labels, np.ndarray] = {}
        for s in self.series:
            other = seen.get(s.labels)
            if other is not None and bool(np.any(other & s.present)):
                raise ExecutionError("vector cannot contain metrics with the same labelset")
            seen[s.labels] = s.present if other is None else other | s.present
        return self

    def merged(self) -> Vector:
        """Series with one label set (present at different steps) joined into one."""
        by: dict[Labels, Series] = {}
        for s in self.series:
            have = by.get(s.labels)
            if have is None:
                by[s.labels] = Series(s.labels, s.values, s.present)  # joins make new arrays
            else:
                have.values = np.where(s.present, s.values, have.values)
                have.present = have.present | s.present
        return Vector(list(by.values()))


@dataclass
class Scalar:
    values: np.ndarray  # float64, one per step


@dataclass
class Raw:
    labels: Labels
    t: np.ndarray  # int64 ms, ascending
    v: np.ndarray  # float64
    stale: np.ndarray | None = None  # staleness markers' int64 ms, ascending (instant reads)


@dataclass
class Matrix:
    """Raw samples and the window each step looks at: (eval time - range, eval time]."""

    series: list[Raw]
    range_ms: int
    eval_ms: np.ndarray  # per step: the instant the window ends (after offset and @)


@dataclass
class StringValue:
    value: str


def series_from(items: Iterable[tuple[Labels, np.ndarray, np.ndarray]]) -> Vector:
    return Vector([Series(labels, values, present) for labels, values, present in items])
