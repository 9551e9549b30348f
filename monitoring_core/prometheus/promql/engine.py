"""The PromQL evaluator: an AST from `promql-parser` evaluated over the metric store.

`evaluate(conn, query, steps_ms)` evaluates the expression at every step at once (see
`model`). Prometheus 2.42 semantics: the 5-minute lookback for instant selectors (a sample
at most that old, closed interval), `offset` and `@` (also `start()`/`end()`), range windows
[t - range, t], subqueries stepped on absolute multiples of their step (default: 1 minute,
Prometheus' default evaluation interval). Anything outside the implemented subset raises
`Unsupported`, which the API answers as `bad_data` naming the part: never a guessed number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import promql_parser as pp
from sqlalchemy import Connection

from monitoring_core.prometheus.promql import labelfuncs
from monitoring_core.prometheus.promql.aggregate import FOLDABLE, Fold, aggregate
from monitoring_core.prometheus.promql.binary import Matching, binary
from monitoring_core.prometheus.promql.functions import (
    RANGE_FUNCTIONS,
    SIMPLE_FUNCTIONS,
    apply_clamp,
    apply_round,
    apply_simple,
    check_holt_winters,
    range_function,
)
from monitoring_core.prometheus.promql.model import (
    MAX_SAMPLES,
    NAME,
    Budget,
    ExecutionError,
    Labels,
    Matrix,
    QueryError,
    Raw,
    Scalar,
    Series,
    StringValue,
    Unsupported,
    Vector,
    drop_name,
    labels_of,
)
from monitoring_core.prometheus.promql.selectors import Matcher, find_series, iter_raw, load_raw

__all__ = [
    "Context",
    "Value",
    "evaluate",
    "parse",
    "require_instant_or_scalar",
    "selector_matchers",
]

Value = Vector | Scalar | Matrix | StringValue
NATIVE_HISTOGRAM_FUNCTIONS = frozenset({"histogram_count", "histogram_sum", "histogram_fraction"})
LOOKBACK_MS = 300_000
DEFAULT_SUBQUERY_STEP_MS = 60_000
_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}
_CARD = {
    "OneToOne": "one-to-one",
    "ManyToOne": "many-to-one",
    "OneToMany": "one-to-many",
    "ManyToMany": "many-to-many",
}


@dataclass(frozen=True)
class Context:
    conn: Connection
    steps: np.ndarray  # int64 ms
    start_ms: int  # the query's start and end (for @ start() / end())
    end_ms: int
    lookback_ms: int = LOOKBACK_MS
    budget: Budget = field(default_factory=Budget)


_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_CALL = re.compile(r"\s*\(")
# Function names of Prometheus 2.42 the parser (which follows 3.x) knows under their new name.
_RENAMED = {"holt_winters": "double_exponential_smoothing"}


def _renamed(query: str) -> str:
    """`query` with 2.42 function names the parser no longer knows replaced by their 3.x
    names: only identifiers followed by `(`, never inside a string or a comment."""
    if not any(old in query for old in _RENAMED):
        return query
    out, i, size = [], 0, len(query)
    while i < size:
        char = query[i]
        if char in "\"'`":
            end = i + 1
            while end < size and query[end] != char:
                end += 2 if query[end] == "\\" and char != "`" else 1
            out.append(query[i : end + 1])
            i = end + 1
        elif char == "#":
            end = query.find("\n", i)
            end = size if end < 0 else end
            out.append(query[i:end])
            i = end
        elif (found := _IDENTIFIER.match(query, i)) is not None:
            word = found.group()
            called = _CALL.match(query, found.end()) is not None
            out.append(_RENAMED[word] if called and word in _RENAMED else word)
            i = found.end()
        else:
            out.append(char)
            i += 1
    return "".join(out)


def parse(query: str) -> Any:
    """The AST, or QueryError with the parser's message."""
    if not query.strip():
        raise QueryError("empty query")
    try:
        return pp.parse(_renamed(query))
    except ValueError as exc:  # the parser's message names what is wrong and where
        raise QueryError(f"parse error: {exc}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a Rust panic in the parser (pyo3 PanicException)
        raise QueryError(f"parse error: the parser cannot read this query ({exc})") from None


def evaluate(
    conn: Connection, query: str, steps_ms: np.ndarray, *, max_samples: int = MAX_SAMPLES
) -> tuple[Any, Value]:
    """(AST, value) of `query` at every step (int64 ms, ascending), holding at most
    `max_samples` samples at once (`model.Budget`; TooManySamples past it)."""
    tree = parse(query)
    steps = np.asarray(steps_ms, dtype=np.int64)
    ctx = Context(conn, steps, int(steps[0]), int(steps[-1]), budget=Budget(max_samples))
    return tree, _eval(ctx, tree)


def _ms(delta: timedelta | None) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


def _at_ms(ctx: Context, at: Any) -> int | None:
    if at is None:
        return None
    kind = str(at.type).rsplit(".", 1)[-1]
    if kind == "Start":
        return ctx.start_ms
    if kind == "End":
        return ctx.end_ms
    try:
        moment: datetime = at.at
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - the parser's Rust panics (before 1970) are BaseExceptions
        raise Unsupported("@ timestamps before 1970 are not supported") from None
    return round(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)


def _eval_times(ctx: Context, offset: timedelta | None, at: Any) -> np.ndarray:
    fixed = _at_ms(ctx, at)
    base = ctx.steps if fixed is None else np.full(len(ctx.steps), fixed, dtype=np.int64)
    return base - _ms(offset)


def selector_matchers(selector: Any) -> list[Matcher]:
    if selector.matchers.or_matchers:
        raise Unsupported("selectors with 'or' between matcher sets are not supported")
    found = [
        Matcher(m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
        for m in selector.matchers.matchers
    ]
    if selector.name:
        found.append(Matcher(NAME, "=", selector.name))
    return found


def _selected(
    ctx: Context, selector: Any, start_ms: int, end_ms: int, *, markers: bool = False
) -> list[Raw]:
    found = find_series(ctx.conn, selector_matchers(selector))
    return load_raw(ctx.conn, found, start_ms, end_ms, budget=ctx.budget, markers=markers)


def _instant_batches(
    ctx: Context, selector: Any
) -> tuple[list[Labels], Iterator[tuple[list[Series], list[np.ndarray]]]]:
    """The selector's series' labels, and a batch of series at a time: each at every step,
    and the time of each step's sample. A step whose newest sample is followed by a
    staleness marker (at or before the step) has none."""
    times = _eval_times(ctx, selector.offset, selector.at)
    found = find_series(ctx.conn, selector_matchers(selector))
    first, last = int(times.min()) - ctx.lookback_ms, int(times.max())

    def batches() -> Iterator[tuple[list[Series], list[np.ndarray]]]:
        for raws in iter_raw(
            ctx.conn, found, first, last, budget=ctx.budget, markers=True, steps=len(ctx.steps)
        ):
            out, stamps = [], []
            for raw in raws:
                index = np.searchsorted(raw.t, times, side="right") - 1
                safe = np.maximum(index, 0)
                present = (index >= 0) & (raw.t[safe] >= times - ctx.lookback_ms)
                if raw.stale is not None and len(raw.stale):
                    marker = np.searchsorted(raw.stale, times, side="right") - 1
                    ended = (marker >= 0) & (raw.stale[np.maximum(marker, 0)] >= raw.t[safe])
                    present &= ~ended
                out.append(Series(raw.labels, raw.v[safe], present))
                stamps.append(raw.t[safe])
            yield out, stamps

    return [labels for _, labels in found], batches()


def instant_vector(ctx: Context, selector: Any) -> tuple[Vector, list[np.ndarray]]:
    """The selector at every step, and per series the time of each step's sample."""
    _, batches = _instant_batches(ctx, selector)
    out: list[Series] = []
    stamps: list[np.ndarray] = []
    for series, times in batches:
        ctx.budget.take(2 * len(series) * len(ctx.steps))  # values and times
        out += series
        stamps += times
    return Vector(out), stamps


@dataclass
class _Stream:
    """A vector a batch of series at a time: the labels every series it may hold will have
    (known before any point is read), and the batches, lazily."""

    labels: list[Labels]
    batches: Iterator[list[Series]]


def _unique(labels: list[Labels], batches: Iterator[list[Series]]) -> Iterator[list[Series]]:
    """`Vector.check_unique` over all batches: only labels that several series share are
    watched (none, mostly: then the batches pass as they are)."""
    counts: dict[Labels, int] = {}
    for item in labels:
        counts[item] = counts.get(item, 0) + 1
    shared = {item for item, count in counts.items() if count > 1}
    if not shared:
        yield from batches
        return
    seen: dict[Labels, np.ndarray] = {}
    for series in batches:
        for s in series:
            if s.labels not in shared:
                continue
            other = seen.get(s.labels)
            if other is not None and bool(np.any(other & s.present)):
                raise ExecutionError("vector cannot contain metrics with the same labelset")
            seen[s.labels] = s.present if other is None else other | s.present
        yield series


def _stream(ctx: Context, node: Any) -> _Stream | None:
    """`node` a batch of series at a time when it can be (a selector, a range function of a
    range selector, a math function of either), else None (nothing evaluated then)."""
    node = _unparen(node)
    if isinstance(node, pp.VectorSelector):
        labels, batches = _instant_batches(ctx, node)
        return _Stream(labels, (series for series, _ in batches))
    if not isinstance(node, pp.Call):
        return None
    name, args = node.func.name, list(node.args)
    if name in RANGE_FUNCTIONS:
        if not isinstance(
            _unparen(args[1 if name == "quantile_over_time" else 0]), pp.MatrixSelector
        ):
            return None
        return _range_stream(ctx, name, args)
    if name in SIMPLE_FUNCTIONS:
        inner = _stream(ctx, args[0])
        if inner is None:
            return None
        labels = [drop_name(item) for item in inner.labels]
        mapped = (apply_simple(name, Vector(series)).series for series in inner.batches)
        return _Stream(labels, _unique(labels, mapped))
    return None


def _range_stream(ctx: Context, name: str, args: list[Any]) -> _Stream:
    """A range function of a range selector, a batch of the selector's series at a time
    (each series' answer needs its own samples only)."""
    node = _unparen(args[1 if name == "quantile_over_time" else 0])
    selector = node.vector_selector
    range_ms = _ms(node.range)
    times = _eval_times(ctx, selector.offset, selector.at)
    found = find_series(ctx.conn, selector_matchers(selector))
    scalar = second = None
    if name == "quantile_over_time":
        scalar = _scalar(ctx, args[0])
    elif name == "predict_linear":
        scalar = _scalar(ctx, args[1])
    elif name in ("holt_winters", "double_exponential_smoothing"):
        scalar, second = _scalar(ctx, args[1]), _scalar(ctx, args[2])
    steps_ms = ctx.steps if name == "predict_linear" else None
    first, last = int(times.min()) - range_ms, int(times.max())

    def batches() -> Iterator[list[Series]]:
        checked = second is None
        for raws in iter_raw(ctx.conn, found, first, last, budget=ctx.budget, steps=len(ctx.steps)):
            if raws and not checked:
                assert scalar is not None and second is not None
                check_holt_winters(scalar.values, second.values)
                checked = True
            matrix = Matrix(raws, range_ms, times)
            yield range_function(name, matrix, scalar, steps_ms=steps_ms, second=second).series

    keep_name = name == "last_over_time"
    labels = [item if keep_name else drop_name(item) for _, item in found]
    return _Stream(labels, _unique(labels, batches()))


def _materialized(ctx: Context, stream: _Stream) -> Vector:
    out: list[Series] = []
    for series in stream.batches:
        ctx.budget.take(len(series) * len(ctx.steps))
        out += series
    return Vector(out)


def _matrix_selector(ctx: Context, node: Any) -> Matrix:
    selector = node.vector_selector
    range_ms = _ms(node.range)
    times = _eval_times(ctx, selector.offset, selector.at)
    raws = _selected(ctx, selector, int(times.min()) - range_ms, int(times.max()))
    return Matrix(raws, range_ms, times)


def _subquery(ctx: Context, node: Any) -> Matrix:
    range_ms = _ms(node.range)
    step_ms = _ms(node.step) or DEFAULT_SUBQUERY_STEP_MS
    times = _eval_times(ctx, node.offset, node.at)
    first = int(times.min()) - range_ms
    start = (first // step_ms) * step_ms
    if start < first:
        start += step_ms
    grid = np.arange(start, int(times.max()) + 1, step_ms, dtype=np.int64)
    if not len(grid):
        return Matrix([], range_ms, times)
    inner = _eval(replace(ctx, steps=grid), node.expr)
    if isinstance(inner, Scalar):
        inner = Vector([Series((), inner.values, np.ones(len(grid), bool))])
    if not isinstance(inner, Vector):
        raise QueryError("a subquery's expression must be an instant vector or a scalar")
    raws = [Raw(s.labels, grid[s.present], s.values[s.present]) for s in inner.series]
    ctx.budget.take(2 * sum(len(raw.t) for raw in raws))
    return Matrix([r for r in raws if len(r.t)], range_ms, times)


def _matrix_batches(ctx: Context, node: Any) -> Iterator[Matrix]:
    """A range vector a batch of series at a time (a range selector), or whole."""
    node = _unparen(node)
    if not isinstance(node, pp.MatrixSelector):
        yield _as_matrix(ctx, node)
        return
    selector = node.vector_selector
    range_ms = _ms(node.range)
    times = _eval_times(ctx, selector.offset, selector.at)
    found = find_series(ctx.conn, selector_matchers(selector))
    first, last = int(times.min()) - range_ms, int(times.max())
    for raws in iter_raw(ctx.conn, found, first, last, budget=ctx.budget, steps=len(ctx.steps)):
        yield Matrix(raws, range_ms, times)


def _as_matrix(ctx: Context, node: Any) -> Matrix:
    node = _unparen(node)
    if isinstance(node, pp.MatrixSelector):
        return _matrix_selector(ctx, node)
    if isinstance(node, pp.SubqueryExpr):
        return _subquery(ctx, node)
    raise QueryError("expected a range vector (a range selector or a subquery)")


def _unparen(node: Any) -> Any:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def _scalar(ctx: Context, node: Any) -> Scalar:
    value = _eval(ctx, node)
    if not isinstance(value, Scalar):
        raise QueryError("expected a scalar argument")
    return value


def _vector(ctx: Context, node: Any) -> Vector:
    value = _eval(ctx, node)
    if not isinstance(value, Vector):
        raise QueryError("expected an instant vector argument")
    return value


def _string(node: Any) -> str:
    node = _unparen(node)
    if not isinstance(node, pp.StringLiteral):
        raise QueryError("expected a string argument")
    return str(node.val)


def _eval(ctx: Context, node: Any) -> Value:
    """`node`'s value; a vector's step values count against the budget."""
    stream = _stream(ctx, node)
    if stream is not None:
        return _materialized(ctx, stream)
    value = _eval_node(ctx, node)
    if isinstance(value, Vector) and not _shares_arrays(node):
        ctx.budget.take(len(value.series) * len(ctx.steps))
    return value


def _shares_arrays(node: Any) -> bool:
    """Whether `node`'s vector holds its operand's arrays, already counted: parentheses, and
    `topk`/`bottomk` (the chosen members' own values)."""
    return isinstance(node, pp.ParenExpr) or (
        isinstance(node, pp.AggregateExpr) and str(node.op).strip() in ("topk", "bottomk")
    )


def _eval_node(ctx: Context, node: Any) -> Value:
    if isinstance(node, pp.ParenExpr):
        return _eval(ctx, node.expr)
    if isinstance(node, pp.NumberLiteral):
        return Scalar(np.full(len(ctx.steps), float(node.val)))
    if isinstance(node, pp.StringLiteral):
        return StringValue(str(node.val))
    if isinstance(node, pp.VectorSelector):
        return instant_vector(ctx, node)[0]
    if isinstance(node, pp.MatrixSelector):
        return _matrix_selector(ctx, node)
    if isinstance(node, pp.SubqueryExpr):
        return _subquery(ctx, node)
    if isinstance(node, pp.UnaryExpr):
        return _negate(_eval(ctx, node.expr))
    if isinstance(node, pp.BinaryExpr):
        return _binary(ctx, node)
    if isinstance(node, pp.AggregateExpr):
        return _aggregate(ctx, node)
    if isinstance(node, pp.Call):
        return _call(ctx, node)
    raise Unsupported(f"{type(node).__name__} expressions are not supported")


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.values)
    if isinstance(value, Vector):
        negated = [Series(drop_name(s.labels), -s.values, s.present) for s in value.series]
        return Vector(negated).check_unique()
    raise QueryError("unary minus needs a scalar or an instant vector")


def _matching(node: Any) -> Matching:
    modifier = node.modifier
    if modifier is None:
        return Matching()
    matching = modifier.matching
    return Matching(
        card=_CARD[str(modifier.card).rsplit(".", 1)[-1]],
        on=matching is not None and str(matching.type).endswith("Include"),
        names=list(matching.labels) if matching is not None else [],
        include=list(modifier.group_labels or []),
        return_bool=bool(modifier.return_bool),
    )


def _binary(ctx: Context, node: Any) -> Value:
    matching = _matching(node)
    fills = getattr(node.modifier, "fill_values", None) if node.modifier else None
    if fills is not None and (fills.lhs is not None or fills.rhs is not None):
        raise Unsupported("fill() modifiers are not supported")
    op = str(node.op).strip()
    left, right = _eval(ctx, node.lhs), _eval(ctx, node.rhs)
    return binary(op, left, right, matching)


def _aggregate(ctx: Context, node: Any) -> Vector:
    op = str(node.op).strip()
    modifier = node.modifier
    by = modifier is None or str(modifier.type).endswith("By")
    names = list(modifier.labels) if modifier is not None else []
    param: Scalar | str | None = None
    if op == "count_values":
        param = _string(node.param)
    elif node.param is not None:
        param = _scalar(ctx, node.param)
    if op in FOLDABLE:
        stream = _stream(ctx, node.expr)
        if stream is not None:  # folded a batch at a time: no member matrix in memory
            fold = Fold(op, by=by, names=names, steps=len(ctx.steps))
            for series in stream.batches:
                held = len(series) * len(ctx.steps)
                ctx.budget.take(held)
                fold.add(series)
                ctx.budget.give(held)
            return fold.result()
    return aggregate(op, _vector(ctx, node.expr), by=by, names=names, param=param)


def _absent_labels(node: Any) -> Labels:
    node = _unparen(node)
    if isinstance(node, pp.MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, pp.VectorSelector):
        return ()
    equal: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in selector_matchers(node):
        if matcher.name == NAME:
            continue
        if matcher.op == "=" and matcher.name not in seen:
            equal[matcher.name] = matcher.value
        else:
            equal.pop(matcher.name, None)
        seen.add(matcher.name)
    return labels_of(equal)


def _absent(ctx: Context, node: Any, present: np.ndarray) -> Vector:
    missing = ~present
    if not missing.any():
        return Vector()
    return Vector([Series(_absent_labels(node), np.ones(len(ctx.steps)), missing)])


def _any_present(vector: Vector, count: int) -> np.ndarray:
    present = np.zeros(count, bool)
    for s in vector.series:
        present |= s.present
    return present


def _call(ctx: Context, node: Any) -> Value:
    name, args = node.func.name, list(node.args)
    if name in RANGE_FUNCTIONS:
        if name == "quantile_over_time":
            return range_function(name, _as_matrix(ctx, args[1]), _scalar(ctx, args[0]))
        if name == "predict_linear":
            matrix = _as_matrix(ctx, args[0])
            return range_function(name, matrix, _scalar(ctx, args[1]), steps_ms=ctx.steps)
        if name in ("holt_winters", "double_exponential_smoothing"):
            matrix = _as_matrix(ctx, args[0])
            smoothing, trend = _scalar(ctx, args[1]), _scalar(ctx, args[2])
            if matrix.series:
                check_holt_winters(smoothing.values, trend.values)
            return range_function(name, matrix, smoothing, second=trend)
        return range_function(name, _as_matrix(ctx, args[0]))
    if name in SIMPLE_FUNCTIONS:
        return apply_simple(name, _vector(ctx, args[0]))
    if name == "absent_over_time":
        present = np.zeros(len(ctx.steps), bool)
        for matrix in _matrix_batches(ctx, args[0]):
            for raw in matrix.series:
                lo = np.searchsorted(raw.t, matrix.eval_ms - matrix.range_ms, side="left")
                hi = np.searchsorted(raw.t, matrix.eval_ms, side="right")
                present |= hi > lo
        return _absent(ctx, args[0], present)
    if name == "absent":
        return _absent(ctx, args[0], _any_present(_vector(ctx, args[0]), len(ctx.steps)))
    return _instant_call(ctx, name, args)


def _instant_call(ctx: Context, name: str, args: list[Any]) -> Value:
    count = len(ctx.steps)
    if name == "time":
        return Scalar(ctx.steps / 1000.0)
    if name == "pi":
        return Scalar(np.full(count, math.pi))
    if name in NATIVE_HISTOGRAM_FUNCTIONS:
        # They read native histogram samples only, which this store never holds (remote write
        # refuses them): over float samples Prometheus answers an empty vector, and so do we.
        for arg in args:
            _eval(ctx, arg)
        return Vector()
    if name == "vector":
        return Vector([Series((), _scalar(ctx, args[0]).values, np.ones(count, bool))])
    if name == "scalar":
        return _to_scalar(_vector(ctx, args[0]), count)
    if name == "round":
        to = _scalar(ctx, args[1]) if len(args) > 1 else None
        return apply_round(_vector(ctx, args[0]), to)
    if name in ("clamp", "clamp_min", "clamp_max"):
        vector = _vector(ctx, args[0])
        low = _scalar(ctx, args[1]).values if name in ("clamp", "clamp_min") else None
        high_arg = args[2] if name == "clamp" else args[1]
        high = _scalar(ctx, high_arg).values if name in ("clamp", "clamp_max") else None
        return apply_clamp(vector, low, high)
    if name == "timestamp":
        return _timestamp(ctx, args[0])
    if name == "histogram_quantile":
        return labelfuncs.histogram_quantile(_scalar(ctx, args[0]), _vector(ctx, args[1]))
    if name == "label_replace":
        strings = [_string(a) for a in args[1:5]]
        return labelfuncs.label_replace(_vector(ctx, args[0]), *strings)
    if name == "label_join":
        strings = [_string(a) for a in args[1:]]
        return labelfuncs.label_join(_vector(ctx, args[0]), strings[0], strings[1], strings[2:])
    if name in ("sort", "sort_desc"):
        return _vector(ctx, args[0])  # order is applied to an instant query's answer
    if name in labelfuncs.DATE_FUNCTIONS:
        vector = (
            _vector(ctx, args[0])
            if args
            else Vector([Series((), ctx.steps / 1000.0, np.ones(count, bool))])
        )
        return labelfuncs.date_function(name, vector)
    raise Unsupported(f"function {name}() is not supported")


def _to_scalar(vector: Vector, count: int) -> Scalar:
    values = np.full(count, math.nan)
    seen = np.zeros(count, dtype=np.int64)
    for s in vector.series:
        seen += s.present
        values = np.where(s.present, s.values, values)
    return Scalar(np.where(seen == 1, values, math.nan))


def _timestamp(ctx: Context, node: Any) -> Vector:
    inner = _unparen(node)
    if isinstance(inner, pp.VectorSelector):
        vector, stamps = instant_vector(ctx, inner)
        series = [
            Series(drop_name(s.labels), t / 1000.0, s.present)
            for s, t in zip(vector.series, stamps, strict=True)
        ]
        return Vector(series).check_unique()
    vector = _vector(ctx, node)
    at = ctx.steps / 1000.0
    return Vector(
        [Series(drop_name(s.labels), at, s.present) for s in vector.series]
    ).check_unique()


def require_instant_or_scalar(value: Value) -> Vector | Scalar:
    if isinstance(value, Vector | Scalar):
        return value
    kind = "range vector" if isinstance(value, Matrix) else "string"
    raise ExecutionError(
        f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector'
    )
