"""The Prometheus HTTP API (`/api/v1/query`, `query_range`, `series`, `labels` …) over our store:
parameter parsing as Prometheus does it, the evaluator's values in Prometheus' envelope.

Answers are `{"status": "success", "data": …}` or `{"status": "error", "errorType",
"error"}`; sample values are strings (`"1.5"`, `"NaN"`, `"+Inf"`) next to times in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import promql_parser as pp
from sqlalchemy import Connection, text

from monitoring_core.points_reader import read_points
from monitoring_core.prometheus.catalog import read_metadata
from monitoring_core.prometheus.promql.aggregate import format_number
from monitoring_core.prometheus.promql.engine import (
    evaluate,
    parse,
    require_instant_or_scalar,
    selector_matchers,
)
from monitoring_core.prometheus.promql.model import (
    NAME,
    Labels,
    Matrix,
    QueryError,
    Scalar,
    StringValue,
    Vector,
)
from monitoring_core.prometheus.promql.selectors import Matcher, find_series

__all__ = [
    "BUILD_INFO",
    "instant_query",
    "label_names",
    "label_values",
    "metadata",
    "parse_duration_ms",
    "parse_time_ms",
    "range_query",
    "series",
]

MAX_POINTS = 11_000  # per series in a range query, as Prometheus refuses past it
# What Grafana reads to pick its query features: the Prometheus version whose PromQL and API
# this implementation follows (see docs/PROTOCOLS.md for the supported subset).
BUILD_INFO = {
    "version": "2.42.0",
    "revision": "monitoring-promql",
    "branch": "main",
    "buildUser": "monitoring",
    "buildDate": "20261202-00:00:00",
    "goVersion": "none (Python evaluator)",
}


def parse_time_ms(raw: str | None, *, default_ms: int | None = None, what: str = "time") -> int:
    """RFC 3339 or Unix seconds (with decimals) as milliseconds."""
    if raw is None or raw == "":
        if default_ms is None:
            raise QueryError(f"missing parameter {what!r}")
        return default_ms
    try:
        seconds = float(raw)
    except ValueError:
        seconds = _rfc3339_seconds(raw, what)
    if not math.isfinite(seconds) or not 0 <= seconds <= 253_402_300_799:
        raise QueryError(f'invalid parameter "{what}": timestamp out of range (1970 to 9999)')
    return round(seconds * 1000)


def _rfc3339_seconds(raw: str, what: str) -> float:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f'invalid parameter "{what}": cannot parse "{raw[:60]}" to a valid timestamp'
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_duration_ms(raw: str | None, *, what: str = "step") -> int:
    """Seconds (with decimals) or a Prometheus duration (`15s`, `1m30s`) as milliseconds."""
    if not raw:
        raise QueryError(f"missing parameter {what!r}")
    try:
        seconds = float(raw)
    except ValueError:
        try:
            delta: timedelta = pp.parse_duration(raw)
        except ValueError:
            raise QueryError(
                f'invalid parameter "{what}": cannot parse "{raw[:60]}" to a valid duration'
            ) from None
        seconds = delta.total_seconds()
    if not math.isfinite(seconds) or seconds > 1e10:
        raise QueryError(f'invalid parameter "{what}": duration out of range')
    return round(seconds * 1000)


def _metric(labels: Labels) -> dict[str, str]:
    return dict(labels)


def _sample(ms: int, value: float) -> list[Any]:
    return [ms / 1000.0, format_number(value)]


def _top_call(tree: Any) -> str | None:
    while isinstance(tree, pp.ParenExpr):
        tree = tree.expr
    return tree.func.name if isinstance(tree, pp.Call) else None


def instant_query(conn: Connection, query: str, at_ms: int) -> dict[str, Any]:
    """`data` of `/api/v1/query` at one instant."""
    tree, value = evaluate(conn, query, np.array([at_ms], dtype=np.int64))
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": _sample(at_ms, float(value.values[0]))}
    if isinstance(value, StringValue):
        return {"resultType": "string", "result": [at_ms / 1000.0, value.value]}
    if isinstance(value, Matrix):
        return {"resultType": "matrix", "result": _raw_matrix(value)}
    items = [s for s in value.series if s.present[0]]
    order = _top_call(tree)
    if order in ("sort", "sort_desc"):
        items.sort(key=lambda s: float(s.values[0]), reverse=order == "sort_desc")
    result = [
        {"metric": _metric(s.labels), "value": _sample(at_ms, float(s.values[0]))} for s in items
    ]
    return {"resultType": "vector", "result": result}


def _raw_matrix(matrix: Matrix) -> list[dict[str, Any]]:
    end = int(matrix.eval_ms[0])
    out = []
    for raw in matrix.series:
        keep = (raw.t >= end - matrix.range_ms) & (raw.t <= end)
        if keep.any():
            values = [
                _sample(int(t), float(v)) for t, v in zip(raw.t[keep], raw.v[keep], strict=True)
            ]
            out.append({"metric": _metric(raw.labels), "values": values})
    return sorted(out, key=lambda item: sorted(item["metric"].items()))


def range_query(
    conn: Connection, query: str, start_ms: int, end_ms: int, step_ms: int
) -> dict[str, Any]:
    """`data` of `/api/v1/query_range`: steps start, start + step, … up to end."""
    if end_ms < start_ms:
        raise QueryError('invalid parameter "end": end timestamp must not be before start time')
    if step_ms <= 0:
        raise QueryError(
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer'
        )
    if (end_ms - start_ms) // step_ms + 1 > MAX_POINTS:
        raise QueryError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
        )
    steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
    _tree, value = evaluate(conn, query, steps)
    value = require_instant_or_scalar(value)
    if isinstance(value, Scalar):
        points = [_sample(int(t), float(v)) for t, v in zip(steps, value.values, strict=True)]
        return {"resultType": "matrix", "result": [{"metric": {}, "values": points}]}
    merged: Vector = value.merged()
    result: list[dict[str, Any]] = []
    for s in merged.series:
        if not s.present.any():
            continue
        index = np.flatnonzero(s.present)
        points = [_sample(int(steps[i]), float(s.values[i])) for i in index.tolist()]
        result.append({"metric": _metric(s.labels), "values": points})
    result.sort(key=lambda item: sorted(item["metric"].items()))
    return {"resultType": "matrix", "result": result}


def _selector_matchers(match: str) -> list[Matcher]:
    tree = parse(match)
    while isinstance(tree, pp.ParenExpr):
        tree = tree.expr
    if not isinstance(tree, pp.VectorSelector):
        raise QueryError(f"match[] must be a series selector, got {match[:80]!r}")
    return selector_matchers(tree)


def _in_range(
    conn: Connection, found: list[tuple[int, Labels]], start_ms: int | None, end_ms: int | None
) -> list[tuple[int, Labels]]:
    """The series with a sample in [start, end] (all of them without a range)."""
    if start_ms is None and end_ms is None:
        return found
    start = datetime.fromtimestamp(((start_ms or 0) - 1) / 1000, tz=UTC)
    end = datetime.fromtimestamp((end_ms if end_ms is not None else 2**42) / 1000, tz=UTC)
    having = read_points(conn, [sid for sid, _ in found], start, end)
    return [(sid, labels) for sid, labels in found if sid in having]


def series(
    conn: Connection, matches: Sequence[str], start_ms: int | None, end_ms: int | None
) -> list[dict[str, str]]:
    if not matches:
        raise QueryError("no match[] parameter provided")
    found: dict[int, Labels] = {}
    for match in matches:
        found.update(find_series(conn, _selector_matchers(match)))
    kept = _in_range(conn, sorted(found.items()), start_ms, end_ms)
    return sorted((_metric(labels) for _, labels in kept), key=lambda m: sorted(m.items()))


def label_names(
    conn: Connection, matches: Sequence[str], start_ms: int | None, end_ms: int | None
) -> list[str]:
    if not matches:
        keys = conn.execute(
            text("SELECT DISTINCT jsonb_object_keys(dimensions) FROM metric_series")
        ).scalars()
        return sorted({NAME, *keys})
    names: set[str] = set()
    for item in series(conn, matches, start_ms, end_ms):
        names.update(item)
    return sorted(names)


def label_values(
    conn: Connection, name: str, matches: Sequence[str], start_ms: int | None, end_ms: int | None
) -> list[str]:
    if not matches:
        if name == NAME:
            sql = "SELECT DISTINCT name FROM metric_series"
            return sorted(conn.execute(text(sql)).scalars())
        sql = "SELECT DISTINCT dimensions->>:k FROM metric_series WHERE dimensions ? :k"
        return sorted(str(v) for v in conn.execute(text(sql), {"k": name}).scalars())
    values = {item[name] for item in series(conn, matches, start_ms, end_ms) if name in item}
    return sorted(values)


def metadata(conn: Connection, metric: str | None, limit: int | None) -> dict[str, Any]:
    return read_metadata(conn, metric=metric, limit=limit)
