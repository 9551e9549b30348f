"""PromQL binary operators: arithmetic, comparison (with or without `bool`) and set operators,
between scalars and vectors, with vector matching (`on`/`ignoring`, `group_left`/`group_right`),
as Prometheus 2.42 does them (`VectorBinop`, `resultMetric`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from monitoring_core.prometheus.promql.model import (
    NAME,
    ExecutionError,
    Labels,
    Scalar,
    Series,
    Unsupported,
    Vector,
    drop_name,
    labels_of,
)

__all__ = ["Matching", "binary"]

ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the sign of the dividend
    "^": np.power,
    "atan2": np.arctan2,
}
COMPARISON: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
SET_OPERATORS = frozenset({"and", "or", "unless"})


@dataclass
class Matching:
    card: str = "one-to-one"  # one-to-one | many-to-one | one-to-many | many-to-many
    on: bool = False
    names: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    return_bool: bool = False


def _signature(labels: Labels, matching: Matching) -> Labels:
    if matching.on:
        wanted = set(matching.names)
        return tuple(pair for pair in labels if pair[0] in wanted)
    unwanted = {*matching.names, NAME}
    return tuple(pair for pair in labels if pair[0] not in unwanted)


def _compute(op: str, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, keep) per step: comparisons keep the left value where they hold."""
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            return ARITHMETIC[op](left, right), np.ones(np.broadcast(left, right).shape, bool)
        held = COMPARISON[op](left, right)
        return np.broadcast_to(left, held.shape).astype(np.float64), held


def _scalars(op: str, left: Scalar, right: Scalar) -> Scalar:
    value, held = _compute(op, left.values, right.values)
    return Scalar(held.astype(np.float64) if op in COMPARISON else value)


def _with_scalar(op: str, vector: Vector, scalar: Scalar, matching: Matching, swap: bool) -> Vector:
    out = []
    for s in vector.series:
        left, right = (scalar.values, s.values) if swap else (s.values, scalar.values)
        value, held = _compute(op, left, right)
        if op in COMPARISON:
            if matching.return_bool:
                out.append(Series(drop_name(s.labels), held.astype(np.float64), s.present))
            else:  # the vector's own value stays, whichever side it is on
                out.append(Series(s.labels, s.values, s.present & held))
        else:
            out.append(Series(drop_name(s.labels), value, s.present))
    return Vector(out).check_unique()


def _sides(
    vector: Vector, matching: Matching, side: str
) -> dict[Labels, tuple[np.ndarray, np.ndarray, Labels]]:
    """Per signature: the series' values and presence joined (unique per step) and labels."""
    joined: dict[Labels, tuple[np.ndarray, np.ndarray, Labels]] = {}
    for s in vector.series:
        sig = _signature(s.labels, matching)
        have = joined.get(sig)
        if have is None:
            joined[sig] = (s.values, s.present, s.labels)
            continue
        if bool(np.any(have[1] & s.present)):
            raise ExecutionError(
                f"found duplicate series for the match group {dict(sig)} on the {side} hand-side "
                "of the operation; many-to-many matching not allowed: matching labels must be "
                "unique on one side"
            )
        joined[sig] = (
            np.where(s.present, s.values, have[0]),
            have[1] | s.present,
            have[2],
        )
    return joined


def _result_labels(many: Labels, one: Labels, op: str, matching: Matching) -> Labels:
    labels = dict(many)
    if op in ARITHMETIC or matching.return_bool:
        labels.pop(NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            labels = {k: v for k, v in labels.items() if k in set(matching.names)}
        else:
            for name in matching.names:
                labels.pop(name, None)
    one_labels = dict(one)
    for name in matching.include:
        if one_labels.get(name):
            labels[name] = one_labels[name]
        else:
            labels.pop(name, None)
    return labels_of(labels)


def _check_one_to_one(vector: Vector, matching: Matching) -> None:
    seen: dict[Labels, np.ndarray] = {}
    for s in vector.series:
        sig = _signature(s.labels, matching)
        have = seen.get(sig)
        if have is not None and bool(np.any(have & s.present)):
            raise ExecutionError(
                "multiple matches for labels: many-to-one matching must be explicit "
                "(group_left/group_right)"
            )
        seen[sig] = s.present if have is None else have | s.present


def _vectors(op: str, left: Vector, right: Vector, matching: Matching) -> Vector:
    swap = matching.card == "one-to-many"
    many, one = (right, left) if swap else (left, right)
    if matching.card == "one-to-one":
        _check_one_to_one(many, matching)
    ones = _sides(one, matching, "left" if swap else "right")
    out = []
    for s in many.series:
        match = ones.get(_signature(s.labels, matching))
        if match is None:
            continue
        values, present, one_labels = match
        both = s.present & present
        if not both.any():
            continue
        lv, rv = (values, s.values) if swap else (s.values, values)
        value, held = _compute(op, lv, rv)
        labels = _result_labels(s.labels, one_labels, op, matching)
        if op in COMPARISON and matching.return_bool:
            out.append(Series(labels, held.astype(np.float64), both))
        elif op in COMPARISON:
            out.append(Series(labels, value, both & held))
        else:
            out.append(Series(labels, value, both))
    merged = Vector(out)
    try:
        merged.check_unique()
    except ExecutionError:
        raise ExecutionError(
            "multiple matches for labels: grouping labels must ensure unique matches"
        ) from None
    return merged.merged()


def _set(op: str, left: Vector, right: Vector, matching: Matching) -> Vector:
    right_present: dict[Labels, np.ndarray] = {}
    for s in right.series:
        sig = _signature(s.labels, matching)
        have = right_present.get(sig)
        right_present[sig] = s.present if have is None else have | s.present
    if op == "or":
        left_present: dict[Labels, np.ndarray] = {}
        for s in left.series:
            sig = _signature(s.labels, matching)
            have = left_present.get(sig)
            left_present[sig] = s.present if have is None else have | s.present
        out = list(left.series)
        for s in right.series:
            taken = left_present.get(_signature(s.labels, matching))
            present = s.present if taken is None else s.present & ~taken
            if present.any():
                out.append(Series(s.labels, s.values, present))
        return Vector(out)
    out = []
    for s in left.series:
        other = right_present.get(_signature(s.labels, matching))
        if op == "and":
            present = s.present & other if other is not None else np.zeros_like(s.present)
        else:
            present = s.present & ~other if other is not None else s.present
        if present.any():
            out.append(Series(s.labels, s.values, present))
    return Vector(out)


def binary(op: str, left: object, right: object, matching: Matching) -> Vector | Scalar:
    """`left op right` for scalars and vectors."""
    if op not in ARITHMETIC and op not in COMPARISON and op not in SET_OPERATORS:
        raise Unsupported(f"operator {op} is not supported")
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        return _scalars(op, left, right)
    if isinstance(left, Vector) and isinstance(right, Scalar):
        return _with_scalar(op, left, right, matching, swap=False)
    if isinstance(left, Scalar) and isinstance(right, Vector):
        return _with_scalar(op, right, left, matching, swap=True)
    if isinstance(left, Vector) and isinstance(right, Vector):
        if op in SET_OPERATORS:
            return _set(op, left, right, matching)
        return _vectors(op, left, right, matching)
    raise ExecutionError(f"operator {op} needs scalar or instant vector operands")
