"""The Prometheus HTTP API (`/api/v1/query`, `query_range`, `series`, `labels` …) over our store:
parameter parsing as Prometheus does it, the evaluator's values in Prometheus' envelope.

Answers are `{"status": "success", "data": …}` or `{"status": "error", "errorType",
"error"}`; sample values are strings (`"1.5"`, `"NaN"`, `"+Inf"`) next to times in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import promql_parser as pp
from sqlalchemy import Connection, text

from monitoring_core.points_reader import newest_times
from monitoring_core.prometheus.catalog import read_metadata
from monitoring_core.prometheus.promql.aggregate import format_number
from monitoring_core.prometheus.promql.engine import (
    evaluate,
    parse,
    require_instant_or_scalar,
    selector_matchers,
)
from monitoring_core.prometheus.promql.model import (
    MAX_SAMPLES,
    NAME,
    Labels,
    Matrix,
    QueryError,
    Scalar,
    Series,
    StringValue,
    Vector,
)
from monitoring_core.prometheus.promql.selectors import Matcher, find_series

__all__ = [
    "BUILD_INFO",
    "Answer",
    "instant_answer",
    "instant_query",
    "label_names",
    "label_values",
    "metadata",
    "parse_duration_ms",
    "parse_time_ms",
    "range_answer",
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


def _points(ms: np.ndarray, values: np.ndarray) -> list[tuple[float, str]]:
    """`_sample` of each (ms, value) as (seconds, text) tuples, ~3x faster: whole arrays
    converted at once (the same floats: int64 ms / 1000.0 as numpy or Python divides)."""
    texts = map(format_number, np.asarray(values, dtype=np.float64).tolist())
    return list(zip((ms / 1000.0).tolist(), texts, strict=True))


def _top_call(tree: Any) -> str | None:
    while isinstance(tree, pp.ParenExpr):
        tree = tree.expr
    return tree.func.name if isinstance(tree, pp.Call) else None


class Answer:
    """`data` of a query's answer. A matrix's series are formatted one at a time by `chunks`
    (the JSON of a long answer, ~30 bytes a sample, is never whole in memory; each series'
    arrays are let go once written); `data` formats them all (tests, rules)."""

    def __init__(
        self, result_type: str, result: Any, render: Callable[[Any], dict[str, Any]] | None = None
    ) -> None:
        self.result_type, self.result, self.render = result_type, result, render

    def data(self) -> dict[str, Any]:
        if self.render is None:
            return {"resultType": self.result_type, "result": self.result}
        result = []
        for item in self.result:
            rendered = self.render(item)  # points as tuples (JSON arrays), here lists
            rendered["values"] = [list(point) for point in rendered["values"]]
            result.append(rendered)
        return {"resultType": self.result_type, "result": result}

    def chunks(self, size: int = 262_144) -> Iterator[bytes]:
        """The whole response body, `{"status": "success", "data": …}` as orjson writes it,
        in pieces of about `size` bytes."""
        head = b'{"status":"success","data":{"resultType":' + orjson.dumps(self.result_type)
        if self.render is None:
            yield head + b',"result":' + orjson.dumps(self.result, option=_NUMPY) + b"}}"
            return
        pending, held, items = [head + b',"result":['], 0, self.result
        for i in range(len(items)):
            item, items[i] = items[i], None  # its arrays go once written
            piece = orjson.dumps(self.render(item), option=_NUMPY)
            pending.append(piece if i == 0 else b"," + piece)
            held += len(piece)
            if held >= size:
                yield b"".join(pending)
                pending, held = [], 0
        pending.append(b"]}}")
        yield b"".join(pending)


_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def instant_query(
    conn: Connection, query: str, at_ms: int, *, max_samples: int = MAX_SAMPLES
) -> dict[str, Any]:
    """`data` of `/api/v1/query` at one instant."""
    return instant_answer(conn, query, at_ms, max_samples=max_samples).data()


def instant_answer(
    conn: Connection, query: str, at_ms: int, *, max_samples: int = MAX_SAMPLES
) -> Answer:
    tree, value = evaluate(conn, query, np.array([at_ms], dtype=np.int64), max_samples=max_samples)
    if isinstance(value, Scalar):
        return Answer("scalar", _sample(at_ms, float(value.values[0])))
    if isinstance(value, StringValue):
        return Answer("string", [at_ms / 1000.0, value.value])
    if isinstance(value, Matrix):
        return _raw_matrix(value)
    items = [s for s in value.series if s.present[0]]
    order = _top_call(tree)
    if order in ("sort", "sort_desc"):
        items.sort(key=lambda s: float(s.values[0]), reverse=order == "sort_desc")
    result = [
        {"metric": _metric(s.labels), "value": _sample(at_ms, float(s.values[0]))} for s in items
    ]
    return Answer("vector", result)


def _raw_matrix(matrix: Matrix) -> Answer:
    end = int(matrix.eval_ms[0])
    kept = []
    for raw in matrix.series:
        keep = (raw.t >= end - matrix.range_ms) & (raw.t <= end)
        if keep.any():
            kept.append((raw.labels, raw.t[keep], raw.v[keep]))
    kept.sort(key=lambda item: sorted(_metric(item[0]).items()))

    def render(item: tuple[Labels, np.ndarray, np.ndarray]) -> dict[str, Any]:
        labels, times, values = item
        return {"metric": _metric(labels), "values": _points(times, values)}

    return Answer("matrix", kept, render)


def range_query(
    conn: Connection,
    query: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    max_samples: int = MAX_SAMPLES,
) -> dict[str, Any]:
    """`data` of `/api/v1/query_range`: steps start, start + step, … up to end."""
    return range_answer(conn, query, start_ms, end_ms, step_ms, max_samples=max_samples).data()


def range_answer(
    conn: Connection,
    query: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    max_samples: int = MAX_SAMPLES,
) -> Answer:
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
    _tree, value = evaluate(conn, query, steps, max_samples=max_samples)
    value = require_instant_or_scalar(value)
    if isinstance(value, Scalar):
        points = [_sample(int(t), float(v)) for t, v in zip(steps, value.values, strict=True)]
        return Answer("matrix", [{"metric": {}, "values": points}])
    merged: Vector = value.merged()
    kept = [s for s in merged.series if s.present.any()]
    kept.sort(key=lambda s: sorted(_metric(s.labels).items()))

    def render(s: Series) -> dict[str, Any]:
        index = np.flatnonzero(s.present)
        return {"metric": _metric(s.labels), "values": _points(steps[index], s.values[index])}

    return Answer("matrix", kept, render)


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
    having = newest_times(conn, [sid for sid, _ in found], start, end)  # one probe a series
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
