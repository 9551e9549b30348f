"""OTLP histograms and exponential histograms into the mergeable latency histograms.

The unmodified OpenTelemetry SDK exports explicit-bucket and exponential histograms (the
latter through a View with `ExponentialBucketHistogramAggregation`) to the running API over
OTLP/HTTP protobuf, twice (cumulative: the second export must count only what is new); after
a rollup, p50/p95/p99 through `query_metric` (what the Metrics page and alert rules read)
must lie within the error each histogram states.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from sqlalchemy import Engine, text

from monitoring_core.alerts.raw import read_raw
from monitoring_core.histogram import quantiles
from monitoring_core.metrics_query import query_metric
from monitoring_core.otlp.histograms import OtlpHistogram, delta, log_buckets
from monitoring_core.rollup_read import DAY, floor_to
from monitoring_core.rollups import run_rollups
from monitoring_core.timerange import TimeRange

RESOURCE = Resource.create({"service.name": "checkout"})
BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0)
QS = (0.5, 0.95, 0.99)


def _exact(values: list[float], q: float) -> tuple[float, float]:
    """The two recorded values around rank q * (n - 1) (the rank the histograms use)."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    return ordered[math.floor(rank)], ordered[math.ceil(rank)]


def _explicit_range(low: float, high: float, values: list[float]) -> tuple[float, float]:
    """The explicit buckets holding `low` and `high`: the error explicit bounds state."""
    lower = max([b for b in BOUNDS if b < low], default=min(values))
    upper = min([b for b in BOUNDS if b >= high], default=max(values))
    return max(lower, min(values)), min(upper, max(values))


def _latencies(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.lognormvariate(4.5, 0.8), 3) for _ in range(n)]


def test_explicit_and_exponential_buckets_convert_within_their_error() -> None:
    values = _latencies(1, 2_000)
    counts = [0] * (len(BOUNDS) + 1)
    for v in values:
        counts[sum(v > b for b in BOUNDS)] += 1
    explicit = OtlpHistogram(
        len(values), sum(values), min(values), max(values), BOUNDS, tuple(counts)
    )
    keys, cnts = log_buckets(explicit)
    assert sum(cnts) == len(values) and keys == sorted(keys)
    for q, got in zip(QS, quantiles(keys, cnts, QS), strict=True):
        lo, hi = _explicit_range(*_exact(values, q), values)
        assert got is not None and lo * 0.99 <= got <= hi * 1.01, (q, got, lo, hi)

    scale = 3  # base 2^(1/8) ~ 1.09: wider than the log buckets' 2 %
    base = 2.0 ** (2.0**-scale)
    index = [math.ceil(math.log(v, base)) - 1 for v in values]
    offset = min(index)
    pos = [0] * (max(index) - offset + 1)
    for i in index:
        pos[i - offset] += 1
    expo = OtlpHistogram(
        len(values), sum(values), None, None, scale=scale, pos=(offset, tuple(pos))
    )
    keys, cnts = log_buckets(expo)
    for q, got in zip(QS, quantiles(keys, cnts, QS), strict=True):
        lo, hi = _exact(values, q)
        assert got is not None and lo / base / 1.01 <= got <= hi * base * 1.01, (q, got, lo, hi)


def test_cumulative_deltas_restart_and_rescale() -> None:
    before = OtlpHistogram(3, 6.0, None, None, scale=2, pos=(4, (1, 1, 1, 0)))
    after = OtlpHistogram(6, 20.0, None, None, scale=1, pos=(2, (2, 4)))
    change = delta(after, before)  # the old buckets merged down to scale 1: (2, (2, 1))
    assert change is not None
    assert (change.count, change.sum, change.pos) == (3, 14.0, (2, (0, 3)))
    restarted = OtlpHistogram(1, 1.0, None, None, scale=1, pos=(2, (1, 0)))
    assert delta(restarted, after) is restarted  # a smaller count: the process restarted
    first = OtlpHistogram(2, 3.0, None, None, (1.0,), (1, 1))
    assert delta(OtlpHistogram(3, 5.0, None, None, (2.0,), (2, 1)), first) is None  # new bounds
    negative = OtlpHistogram(2, -3.0, -2.0, -1.0, (-1.5,), (1, 1))
    keys, _ = log_buckets(negative)
    assert all(k < 0 for k in keys)


def _export(api_server: str, key: str, view: View | None, batches: list[list[float]]) -> None:
    exporter = OTLPMetricExporter(
        endpoint=f"{api_server}/v1/metrics", headers={"Authorization": f"Bearer {key}"}
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=RESOURCE, metric_readers=[reader], views=[view] if view else []
    )
    histogram = provider.get_meter("shop").create_histogram("checkout.duration", unit="ms")
    for batch in batches:
        for value in batch:
            histogram.record(value, {"route": "/pay"})
        assert provider.force_flush()
    provider.shutdown()


def _read_quantiles(engine: Engine, since: datetime) -> dict[float, float]:
    run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))
    tr = TimeRange(floor_to(since, DAY), datetime.now(UTC) + timedelta(minutes=1))
    out = {}
    with engine.connect() as conn:
        for q in QS:
            frame = query_metric(
                conn,
                metric_name="checkout.duration",
                aggregation=f"p{round(q * 100)}",
                interval="1440m",
                tr=tr,
                filters={"route": "/pay"},
            )
            assert len(frame) == 1, frame
            out[q] = float(frame["value"].iloc[0])
    return out


@pytest.mark.parametrize("kind", ["explicit", "exponential"])
def test_sdk_histograms_answer_quantiles(
    api_server: str, ingest_key: str, engine: Engine, kind: str
) -> None:
    # the second batch widens the range: the exponential aggregation lowers its scale from 2
    # to 1 between the exports, so its delta is taken against buckets merged down
    first, second = _latencies(2, 600), [*_latencies(3, 900), 15_000.0, 20_000.0]
    view: Any = (
        View(
            instrument_name="checkout.duration",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=BOUNDS),
        )
        if kind == "explicit"
        else View(
            instrument_name="checkout.duration",
            aggregation=ExponentialBucketHistogramAggregation(max_size=40),
        )
    )
    since = datetime.now(UTC)
    _export(api_server, ingest_key, view, [first, second, []])
    values = first + second
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count, hist_counts FROM metric_histograms ORDER BY time")
        ).all()
    # cumulative exports 600, 1502, 1502 -> deltas 600 and 902 (the unchanged third: no row)
    assert [r.count for r in rows] == [600, 902]
    assert [sum(r.hist_counts) for r in rows] == [600, 902]
    got = _read_quantiles(engine, since)
    for q in QS:
        lo, hi = _exact(values, q)
        if kind == "explicit":
            lo, hi = _explicit_range(lo, hi, values)
            assert lo * 0.99 <= got[q] <= hi * 1.01, (q, got[q], lo, hi)
        else:
            # 40 buckets over the range of the values: the SDK picks the scale
            scale = math.floor(math.log2((40 - 1) / math.log2(max(values) / min(values))))
            base = 2.0 ** (2.0**-scale)
            assert lo / base / 1.01 <= got[q] <= hi * base * 1.01, (q, got[q], lo, hi, base)
    exact = np.quantile(values, QS)
    assert all(abs(got[q] - x) / x < 0.35 for q, x in zip(QS, exact, strict=True))
    with engine.connect() as conn:  # short alert windows: raw points, which it has none of
        raw = read_raw(conn, {"checkout.duration": since - timedelta(minutes=1)},
                       now=datetime.now(UTC), limit=1000)  # fmt: skip
    assert raw["checkout.duration"] is None  # so the alert engine reads the rollups
