"""PromQL aggregations (`sum`, `avg`, `topk`, `quantile`, `count_values` …) with `by`/`without`,
over all evaluation steps at once: each group is a (members × steps) matrix and a mask."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from monitoring_core.prometheus.promql.functions import prom_quantile
from monitoring_core.prometheus.promql.model import (
    NAME,
    Labels,
    Scalar,
    Series,
    Unsupported,
    Vector,
    labels_of,
)

__all__ = ["AGGREGATIONS", "FOLDABLE", "Fold", "aggregate", "format_number"]

AGGREGATIONS = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    }
)


def format_number(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    text = repr(value)  # Python's repr is the shortest round-trip digits too (fast path)
    if "e" not in text and "n" not in text:
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_positional(value, unique=True, trim="-")


def _group_labels(labels: Labels, by: bool, names: frozenset[str]) -> Labels:
    if by:
        return tuple(pair for pair in labels if pair[0] in names)
    return tuple(pair for pair in labels if pair[0] not in names and pair[0] != NAME)


def _groups(vector: Vector, by: bool, names: list[str]) -> dict[Labels, list[Series]]:
    wanted = frozenset(names)
    groups: dict[Labels, list[Series]] = defaultdict(list)
    for series in vector.series:
        groups[_group_labels(series.labels, by, wanted)].append(series)
    return groups


def _stack(members: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([m.values for m in members]), np.vstack([m.present for m in members])


def _steps(vector: Vector) -> int:
    return len(vector.series[0].present) if vector.series else 0


def _deviation(op: str, group: Labels, members: list[Series]) -> Series:
    """`stddev`/`stdvar` in two passes over the members (each sum runs member after member
    from 0.0, as numpy's reduction of their matrix does), without the matrix."""
    steps = len(members[0].present)
    present, count, total = np.zeros(steps, bool), np.zeros(steps, np.int64), np.zeros(steps)
    for m in members:
        present |= m.present
        count += m.present
        total += np.where(m.present, m.values, 0.0)
    squares = np.zeros(steps)
    with np.errstate(all="ignore"):
        mean = total / count
        for m in members:
            squares += np.where(m.present, (m.values - mean) ** 2, 0.0)
        var = squares / count
    return Series(group, var if op == "stdvar" else np.sqrt(var), present)


def _top(op: str, members: list[Series], k: np.ndarray) -> list[Series]:
    values, present = _stack(members)
    chosen = np.zeros_like(present)
    for step in range(values.shape[1]):
        wanted = int(k[step]) if math.isfinite(k[step]) else 0
        rows = np.flatnonzero(present[:, step])
        if wanted < 1 or not len(rows):
            continue
        column = values[rows, step]
        # NaN is the least wanted either way, as in Prometheus' heaps
        key = np.where(np.isnan(column), -np.inf, column if op == "topk" else -column)
        order = np.argsort(-key, kind="stable")[:wanted]
        chosen[rows[order], step] = True
    return [Series(m.labels, m.values, chosen[i]) for i, m in enumerate(members) if chosen[i].any()]


def _quantile(members: list[Series], q: np.ndarray) -> np.ndarray:
    values, present = _stack(members)
    out = np.full(values.shape[1], math.nan)
    for step in range(values.shape[1]):
        column = values[present[:, step], step]
        if len(column):
            out[step] = prom_quantile(float(q[step]), column)
    return out


def _count_values(label: str, group: Labels, members: list[Series]) -> list[Series]:
    values, present = _stack(members)
    counts: dict[str, np.ndarray] = {}
    for step in range(values.shape[1]):
        for value in values[present[:, step], step].tolist():
            text = format_number(value)
            counts.setdefault(text, np.zeros(values.shape[1]))[step] += 1
    base = dict(group)
    return [
        Series(labels_of({**base, label: text}), count, count > 0) for text, count in counts.items()
    ]


def aggregate(
    op: str,
    vector: Vector,
    *,
    by: bool,
    names: list[str],
    param: Scalar | str | None = None,
) -> Vector:
    """`op by (names)` (or `without` when `by` is False) at every step."""
    if op not in AGGREGATIONS:
        raise Unsupported(f"aggregation {op}() is not supported")
    if op in FOLDABLE:  # member by member: no (members x steps) matrix
        fold = Fold(op, by=by, names=names, steps=_steps(vector))
        fold.add(vector.series)
        return fold.result()
    out: list[Series] = []
    for group, members in _groups(vector, by, names).items():
        if op in ("stddev", "stdvar"):
            out.append(_deviation(op, group, members))
            continue
        if op in ("topk", "bottomk"):
            assert isinstance(param, Scalar)
            out += _top(op, members, param.values)
            continue
        if op == "count_values":
            assert isinstance(param, str)
            out += _count_values(param, group, members)
            continue
        assert op == "quantile" and isinstance(param, Scalar)
        any_present = np.zeros(len(members[0].present), bool)
        for m in members:
            any_present |= m.present
        out.append(Series(group, _quantile(members, param.values), any_present))
    return Vector(out)


# Aggregations folded a batch of series at a time (no member matrix): their answer never
# needs all members at once.
FOLDABLE = frozenset({"sum", "avg", "count", "min", "max", "group"})


class Fold:
    """`op by/without (names)` fed a batch of member series at a time, bit for bit what
    `aggregate` answers over all of them: numpy's reductions along the members' axis run
    member after member (a sum from 0.0, `fmin`/`fmax` from the first member), and so does
    this, in the same order."""

    def __init__(self, op: str, *, by: bool, names: list[str], steps: int) -> None:
        if op not in FOLDABLE:
            raise ValueError(f"{op} is not foldable")
        self.op, self.by, self.wanted, self.steps = op, by, frozenset(names), steps
        # per group: [any present, members present (count), sum | min | max]
        self.groups: dict[Labels, list[Any]] = {}

    def add(self, members: list[Series]) -> None:
        op = self.op
        for s in members:
            key = _group_labels(s.labels, self.by, self.wanted)
            group = self.groups.get(key)
            if group is None:
                count = np.zeros(self.steps, dtype=np.int64)
                if op in ("min", "max"):
                    first = np.where(s.present, s.values, np.nan)
                    self.groups[key] = [s.present.copy(), count + s.present, first]
                    continue
                group = self.groups[key] = [np.zeros(self.steps, bool), count, None]
                if op in ("sum", "avg"):
                    group[2] = np.zeros(self.steps)
            group[0] |= s.present
            group[1] += s.present
            if op in ("sum", "avg"):
                group[2] += np.where(s.present, s.values, 0.0)
            elif op in ("min", "max"):
                reduce = np.fmin if op == "min" else np.fmax
                group[2] = reduce(group[2], np.where(s.present, s.values, np.nan))

    def result(self) -> Vector:
        out = []
        with np.errstate(all="ignore"):
            for key, (present, count, folded) in self.groups.items():
                if self.op == "sum":
                    values = folded
                elif self.op == "avg":
                    values = folded / count
                elif self.op == "count":
                    values = count.astype(np.float64)
                elif self.op == "group":
                    values = np.ones(self.steps)
                else:
                    values = folded
                out.append(Series(key, values, present))
        return Vector(out)
