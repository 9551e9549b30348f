"""OTLP metrics as metric points (docs/PROTOCOLS.md "OTLP", "Metrics").

Pure mapping (`observations`) and the one rule for cumulative sums (`cumulative_increase`);
`store_metrics` applies the rule with the state kept in `otlp_cumulative` and writes through
the one metric writer (`ingest.metrics.write_metrics`, as `ingest.points.store_points` does),
with the per-metric series cap.

- gauge, and a non-monotonic cumulative sum (an up-down counter): the value, under the name;
- delta sum: the value, under the name;
- monotonic cumulative sum: the increase since the previous point of the same series, under
  the name (the counter restarted when its start time changed or its value went down: then
  the value itself is the increase); the first point of a series whose start time is older
  than the accepted window only sets the baseline (its whole history would be a false spike);
- histogram and exponential histogram: their buckets under the name, as mergeable log-bucket
  histograms in `metric_histograms` (`otlp/histograms.py`: cumulative points as deltas per
  series), which the metric rollup folds into the series' 1-minute rows, so p50/p95/p99 of
  the metric answer from the OTLP buckets; and `NAME.count` and `NAME.sum`, each as a sum of
  its temporality (so cumulative ones become increases);
- summary: `NAME.count`, `NAME.sum` as cumulative sums, quantiles as `NAME` with dimension
  `quantile`.

Dimensions: the point's attributes, the scope's attributes and these resource attributes
(`RESOURCE_DIMENSIONS`; `service.name` as `service`). Per-process resource attributes
(pid, instance id) are left out: they would start new series on every restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from monitoring_core.histogram import bucket_value
from monitoring_core.ingest.copy import copy_rows
from monitoring_core.ingest.metrics import (
    MAX_DIMENSIONS,
    SeriesCache,
    SeriesKey,
    SeriesLimitExceeded,
    dimensions_key,
    resolve_series,
    write_metrics,
)
from monitoring_core.ingest.points import MetricPoint, points_to_batch
from monitoring_core.ingest.validate import Limits
from monitoring_core.otlp.histograms import (
    OtlpHistogram,
    delta,
    estimated_sum,
    from_point,
    from_state,
    log_buckets,
    to_state,
)
from monitoring_core.otlp.values import attributes, clean_text, service_of, time_of

__all__ = [
    "RESOURCE_DIMENSIONS",
    "HistogramRow",
    "MetricsResult",
    "Observation",
    "cumulative_increase",
    "observations",
    "store_metrics",
]

RESOURCE_DIMENSIONS = {
    "service.namespace": "service_namespace",
    "deployment.environment": "environment",
    "deployment.environment.name": "environment",
    "host.name": "host",
}
DELTA, CUMULATIVE = 1, 2
_NO_RECORDED_VALUE = 1  # DataPointFlags


@dataclass(frozen=True, slots=True)
class Observation:
    """One value: `kind` gauge (stored as is) or cumulative (becomes an increase)."""

    name: str
    dimensions: Mapping[str, str]
    time: datetime
    value: float
    kind: str  # "gauge" | "cumulative"
    start_ns: int = 0
    hist: OtlpHistogram | None = None  # a histogram point's buckets (value: its count)


@dataclass(frozen=True, slots=True)
class HistogramRow:
    """One row of `metric_histograms`: a (delta) histogram point in log buckets."""

    name: str
    dimensions: Mapping[str, str]
    time: datetime
    count: int
    sum: float
    min: float
    max: float
    keys: list[int]
    counts: list[int]


@dataclass
class MetricsResult:
    points: list[MetricPoint] = field(default_factory=list)
    histograms: list[HistogramRow] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""

    def refuse(self, count: int, reason: str) -> None:
        self.rejected += count
        self.reason = self.reason or reason


def _dimension_value(value: Any) -> str:
    if isinstance(value, str):
        text_value = value
    elif isinstance(value, bool):
        text_value = "true" if value else "false"
    else:
        text_value = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return clean_text(text_value, 500)


def _dimensions(*parts: Mapping[str, Any]) -> dict[str, str] | None:
    dims: dict[str, str] = {}
    for part in parts:
        for key, value in part.items():
            if key and value is not None:
                dims[key[:100]] = _dimension_value(value)
    return dims if len(dims) <= MAX_DIMENSIONS else None


def _number(point: Any) -> float:
    return float(point.as_double if point.WhichOneof("value") == "as_double" else point.as_int)


def observations(request: Any, limits: Limits, result: MetricsResult) -> list[Observation]:
    """Every data point as observations; refused points are counted in `result`."""
    out: list[Observation] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        base = {"service": service_of(resource)}
        for key, dim in RESOURCE_DIMENSIONS.items():
            if resource.get(key) not in (None, ""):
                base[dim] = resource[key]
        for scope_metrics in resource_metrics.scope_metrics:
            scope = attributes(scope_metrics.scope.attributes)
            for metric in scope_metrics.metrics:
                name = clean_text(metric.name, 200)
                if not name:
                    result.refuse(1, "a metric has no name")
                    continue
                out += _metric(metric, name, (scope, base), limits, result)
    return out


def _metric(
    metric: Any,
    name: str,
    context: tuple[dict[str, Any], ...],
    limits: Limits,
    result: MetricsResult,
) -> list[Observation]:
    which = metric.WhichOneof("data")
    out: list[Observation] = []
    if which is None:
        return out
    data = getattr(metric, which)
    for point in data.data_points:
        if point.flags & _NO_RECORDED_VALUE:
            continue
        moment = time_of(point.time_unix_nano)
        if not point.time_unix_nano or not limits.oldest <= moment <= limits.newest:
            result.refuse(1, f"a point of {name!r} has a time outside the accepted window")
            continue
        dims = _dimensions(attributes(point.attributes), *context)
        if dims is None:
            result.refuse(1, f"a point of {name!r} has more than {MAX_DIMENSIONS} dimensions")
            continue
        start = int(point.start_time_unix_nano)
        if which == "gauge":
            out.append(Observation(name, dims, moment, _number(point), "gauge"))
        elif which == "sum":
            kind = (
                "cumulative"
                if data.aggregation_temporality == CUMULATIVE and data.is_monotonic
                else "gauge"
            )
            out.append(Observation(name, dims, moment, _number(point), kind, start))
        elif which in ("histogram", "exponential_histogram"):
            kind = "cumulative" if data.aggregation_temporality == CUMULATIVE else "gauge"
            hist = from_point(point, which == "exponential_histogram")
            if isinstance(hist, str):
                result.refuse(1, f"a histogram point of {name!r}: {hist}")
                continue
            out.append(Observation(name, dims, moment, float(hist.count), kind, start, hist))
            out.append(Observation(f"{name}.count", dims, moment, float(point.count), kind, start))
            if point.HasField("sum"):
                out.append(Observation(f"{name}.sum", dims, moment, point.sum, kind, start))
        elif which == "summary":
            out.append(
                Observation(f"{name}.count", dims, moment, float(point.count), "cumulative", start)
            )
            out.append(Observation(f"{name}.sum", dims, moment, point.sum, "cumulative", start))
            for quantile in point.quantile_values:
                quantile_dims = {**dims, "quantile": _dimension_value(quantile.quantile)}
                out.append(Observation(name, quantile_dims, moment, quantile.value, "gauge"))
    return [o for o in out if o.value == o.value and abs(o.value) != float("inf")]


def cumulative_increase(
    previous: tuple[int, float] | None, start_ns: int, value: float, oldest_ns: int
) -> float | None:
    """The increase a cumulative point adds, or None when it only sets the baseline.

    `previous` is (start_ns, value) of the series' last point. A new start time or a
    smaller value is a restart: the counter counted `value` since it started.
    """
    if previous is None:
        return value if start_ns and start_ns >= oldest_ns else None
    prev_start, prev_value = previous
    if start_ns != prev_start or value < prev_value:
        return value
    return value - prev_value


_STATE = text(
    "SELECT key, start_ns, value, buckets FROM otlp_cumulative WHERE key = ANY(:keys) FOR UPDATE"
)
_SAVE = text(
    """
    INSERT INTO otlp_cumulative (key, start_ns, value, time, buckets)
    SELECT k, s, v, t, CAST(b AS jsonb) FROM unnest(
        CAST(:keys AS text[]), CAST(:starts AS bigint[]), CAST(:values AS float8[]),
        CAST(:times AS timestamptz[]), CAST(:buckets AS text[])) AS u(k, s, v, t, b)
    ON CONFLICT (key) DO UPDATE SET start_ns = EXCLUDED.start_ns, value = EXCLUDED.value,
                                    time = EXCLUDED.time, buckets = EXCLUDED.buckets
    WHERE otlp_cumulative.time <= EXCLUDED.time
    """
)


def _state_key(obs: Observation) -> str:
    prefix = "h\x1f" if obs.hist is not None else ""  # a histogram's buckets, not a sum
    return (
        prefix
        + obs.name
        + "\x1f"
        + orjson.dumps(dict(obs.dimensions), option=orjson.OPT_SORT_KEYS).decode()
    )


def _histogram_increase(
    previous: tuple[int, float, OtlpHistogram | None] | None,
    obs: Observation,
    oldest_ns: int,
) -> OtlpHistogram | None:
    """What a cumulative histogram point adds (the rule of `cumulative_increase`, per bucket)."""
    assert obs.hist is not None
    if previous is None:
        return obs.hist if obs.start_ns and obs.start_ns >= oldest_ns else None
    prev_start, _, prev_hist = previous
    if obs.start_ns != prev_start or prev_hist is None:
        return obs.hist
    return delta(obs.hist, prev_hist)


def _histogram_row(obs: Observation, hist: OtlpHistogram) -> HistogramRow | None:
    keys, counts = log_buckets(hist)
    if not keys:
        return None
    exact = obs.kind == "gauge"  # a delta point's min and max are its own
    low = hist.min if exact and hist.min is not None else bucket_value(keys[0])
    high = hist.max if exact and hist.max is not None else bucket_value(keys[-1])
    total = hist.sum if hist.sum is not None else estimated_sum(keys, counts)
    return HistogramRow(
        obs.name, obs.dimensions, obs.time, sum(counts), total, low, high, keys, counts
    )


def _points(
    conn: Connection, obs: list[Observation], oldest_ns: int
) -> tuple[list[MetricPoint], list[HistogramRow]]:
    """Gauges as they are; cumulative observations as increases, the state updated;
    histogram points as rows of log buckets."""
    cumulative = sorted((o for o in obs if o.kind == "cumulative"), key=lambda o: o.time)
    keys = sorted({_state_key(o) for o in cumulative})
    state: dict[str, tuple[int, float, OtlpHistogram | None]] = {}
    if keys:  # locked in key order: two requests for the same series wait, never deadlock
        state = {
            row.key: (row.start_ns, row.value, from_state(row.buckets) if row.buckets else None)
            for row in conn.execute(_STATE, {"keys": keys})
        }
    points: list[MetricPoint] = []
    rows: list[HistogramRow] = []
    latest: dict[str, tuple[int, float, datetime, str | None]] = {}
    for o in obs:
        if o.kind != "gauge":
            continue
        if o.hist is None:
            points.append(MetricPoint(o.name, o.value, o.time, o.dimensions, "otlp"))
        elif o.hist.count and (row := _histogram_row(o, o.hist)) is not None:
            rows.append(row)
    for o in cumulative:
        key = _state_key(o)
        if o.hist is not None:
            added = _histogram_increase(state.get(key), o, oldest_ns)
            state[key] = (o.start_ns, o.value, o.hist)
            latest[key] = (o.start_ns, o.value, o.time, orjson.dumps(to_state(o.hist)).decode())
            if added is not None and added.count and (row := _histogram_row(o, added)):
                rows.append(row)
            continue
        previous = state.get(key)
        increase = cumulative_increase(
            None if previous is None else previous[:2], o.start_ns, o.value, oldest_ns
        )
        state[key] = (o.start_ns, o.value, None)
        latest[key] = (o.start_ns, o.value, o.time, None)
        if increase is not None:
            points.append(MetricPoint(o.name, increase, o.time, o.dimensions, "otlp"))
    if latest:
        conn.execute(
            _SAVE,
            {
                "keys": list(latest),
                "starts": [v[0] for v in latest.values()],
                "values": [v[1] for v in latest.values()],
                "times": [v[2] for v in latest.values()],
                "buckets": [v[3] for v in latest.values()],
            },
        )
    return points, rows


_HISTOGRAM_COLUMNS = (
    ("time", "timestamptz"), ("series_id", "int8"), ("count", "int8"), ("sum", "float8"),
    ("min", "float8"), ("max", "float8"), ("hist_keys", "int4[]"), ("hist_counts", "int8[]"),
)  # fmt: skip


def _write_histograms(
    conn: Connection, rows: list[HistogramRow], cache: SeriesCache, max_series_per_metric: int
) -> dict[SeriesKey, int]:
    """COPY the histogram rows (their series created under the same cap as points)."""
    keys = [(row.name, dimensions_key(row.dimensions)) for row in rows]
    ids, fresh = resolve_series(
        conn, dict.fromkeys(keys, "otlp"), cache, max_series_per_metric=max_series_per_metric
    )
    copy_rows(
        conn,
        "metric_histograms",
        [c for c, _ in _HISTOGRAM_COLUMNS],
        [t for _, t in _HISTOGRAM_COLUMNS],
        (
            (r.time, ids[k], r.count, r.sum, r.min, r.max, r.keys, r.counts)
            for r, k in zip(rows, keys, strict=True)
        ),
    )
    return fresh


def store_metrics(
    conn: Connection,
    obs: list[Observation],
    cache: SeriesCache,
    *,
    oldest_ns: int,
    max_series_per_metric: int,
    result: MetricsResult,
) -> dict[SeriesKey, int]:
    """Write the observations (caller's transaction); series past the cap are refused and
    counted in `result`. Returns new series ids, to cache after commit."""
    points, rows = _points(conn, obs, oldest_ns)
    while points or rows:
        conn.execute(text("SAVEPOINT otlp_metrics"))
        try:
            fresh: dict[SeriesKey, int] = {}
            if points:
                batch = points_to_batch(points)
                fresh = write_metrics(
                    conn, batch, cache, max_series_per_metric=max_series_per_metric
                )
            if rows:
                fresh.update(_write_histograms(conn, rows, cache, max_series_per_metric))
        except SeriesLimitExceeded as exc:
            conn.execute(text("ROLLBACK TO SAVEPOINT otlp_metrics"))
            dropped = [p for p in points if p.name == exc.metric]
            result.refuse(len(dropped) + sum(r.name == exc.metric for r in rows), exc.message)
            points = [p for p in points if p.name != exc.metric]
            rows = [r for r in rows if r.name != exc.metric]
            continue
        result.points, result.histograms = points, rows
        return fresh
    return {}
