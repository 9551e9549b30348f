"""One deterministic data set for the PromQL tests: counters (one with a reset), gauges, a
classic histogram, a series that stops, an info metric; samples every ~15 s over 2 hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from monitoring_core.ingest.points import MetricPoint

HOURS = 2
STEP_MS = 15_000
LES = ("0.1", "0.5", "1", "5", "+Inf")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    t_ms: int
    value: float


def _times(rng: np.random.Generator, end_ms: int, count: int) -> np.ndarray:
    base = end_ms - (count - 1) * STEP_MS + np.arange(count, dtype=np.int64) * STEP_MS
    return base + rng.integers(-300, 300, size=count)  # scrape jitter: extrapolation matters


def samples(end: datetime) -> list[Sample]:
    """Every sample, series by series, times ascending; the last sample is near `end`."""
    rng = np.random.default_rng(15)
    end_ms = int(end.timestamp() * 1000) - 1_000
    count = HOURS * 3600_000 // STEP_MS
    out: list[Sample] = []

    def add(name: str, labels: dict[str, str], times: np.ndarray, values: np.ndarray) -> None:
        pairs = tuple(sorted(labels.items()))
        out.extend(
            Sample(name, pairs, int(t), float(v)) for t, v in zip(times, values, strict=True)
        )

    for job in ("api", "web"):
        for instance in ("a", "b"):
            for code in ("200", "500"):
                scale = 20.0 if code == "200" else 1.5
                steps = rng.poisson(scale, size=count).astype(float)
                values = np.cumsum(steps) + rng.integers(0, 1000)
                if (job, instance, code) == ("api", "b", "200"):
                    values[200:] -= values[200] - 3.0  # a restart: the counter starts again
                labels = {"job": job, "instance": instance, "code": code}
                add("http_requests_total", labels, _times(rng, end_ms, count), values)
    for room, floor in (("hall", "0"), ("kitchen", "0"), ("attic", "2"), ("office", "1")):
        walk = 20.0 + np.cumsum(rng.normal(0, 0.3, size=count))
        add("temperature", {"room": room, "floor": floor}, _times(rng, end_ms, count), walk)
    for job in ("api", "web"):
        times = _times(rng, end_ms, count)
        per_step = rng.multinomial(30, [0.3, 0.3, 0.2, 0.15, 0.05], size=count)
        cumulative = np.cumsum(np.cumsum(per_step, axis=1), axis=0).astype(float)
        for i, le in enumerate(LES):
            add("rq_seconds_bucket", {"job": job, "le": le}, times, cumulative[:, i])
        add("rq_seconds_count", {"job": job}, times, cumulative[:, -1])
        sums = np.cumsum(rng.gamma(2.0, 0.4, size=count) * 30)
        add("rq_seconds_sum", {"job": job}, times, sums)
    stop = count - 80  # 20 minutes before the end
    for queue in ("a", "b"):
        times = _times(rng, end_ms, count)
        depth = rng.integers(0, 50, size=count).astype(float)
        if queue == "b":
            times, depth = times[:stop], depth[:stop]
        add("queue_depth", {"queue": queue}, times, depth)
    for job, version in (("api", "1"), ("web", "2")):
        add(
            "build_info",
            {"job": job, "version": version},
            _times(rng, end_ms, count),
            np.ones(count),
        )
    return out


def as_points(data: list[Sample]) -> list[MetricPoint]:
    return [
        MetricPoint(s.name, s.value, datetime.fromtimestamp(s.t_ms / 1000, tz=UTC), dict(s.labels))
        for s in data
    ]


def openmetrics(data: list[Sample]) -> str:
    """The samples in the OpenMetrics text format (untyped), for `promtool tsdb create-blocks`."""
    lines = []
    for s in sorted(data, key=lambda s: (s.name, s.labels, s.t_ms)):
        labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
        lines.append(f"{s.name}{{{labels}}} {s.value!r} {s.t_ms / 1000:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def span(data: list[Sample]) -> tuple[datetime, datetime]:
    first = min(s.t_ms for s in data)
    last = max(s.t_ms for s in data)
    return (
        datetime.fromtimestamp(first / 1000, tz=UTC) - timedelta(minutes=1),
        datetime.fromtimestamp(last / 1000, tz=UTC),
    )
