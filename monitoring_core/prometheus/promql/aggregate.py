"""PromQL aggregations (`sum`, `avg`, `topk`, `quantile`, `count_values` …) with `by`/`without`,
over all evaluation steps at once: each group is a (members × steps) matrix and a mask."""

from __future__ import annotations

import math
from collections import defaultdict

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

__all__ = ["AGGREGATIONS", "aggregate", "format_number"]

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


def _simple(op: str, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    count = present.sum(axis=0)
    with np.errstate(all="ignore"):
        if op == "sum":
            return np.where(present, values, 0.0).sum(axis=0)
        if op == "avg":
            return np.where(present, values, 0.0).sum(axis=0) / count
        if op == "count":
            return count.astype(np.float64)
        if op == "group":
            return np.ones(values.shape[1])
        if op == "min":
            return np.fmin.reduce(np.where(present, values, np.nan), axis=0)
        if op == "max":
            return np.fmax.reduce(np.where(present, values, np.nan), axis=0)
        mean = np.where(present, values, 0.0).sum(axis=0) / count
        var = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / count
        return var if op == "stdvar" else np.sqrt(var)


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
    out: list[Series] = []
    for group, members in _groups(vector, by, names).items():
        if op in ("topk", "bottomk"):
            assert isinstance(param, Scalar)
            out += _top(op, members, param.values)
            continue
        if op == "count_values":
            assert isinstance(param, str)
            out += _count_values(param, group, members)
            continue
        _, present = _stack(members)
        any_present: np.ndarray = np.asarray(present.any(axis=0))
        if op == "quantile":
            assert isinstance(param, Scalar)
            out.append(Series(group, _quantile(members, param.values), any_present))
            continue
        values, present = _stack(members)
        out.append(Series(group, _simple(op, values, present), any_present))
    return Vector(out)
