"""The Pushgateway's URL grouping key and how pushed samples become metric points.

URL shape (prometheus_client 0.26 `_escape_grouping_key`, Pushgateway README):
`/metrics/job/<job>{/<label>/<value>}`; a value with `/` or a space comes as
`<label>@base64/<urlsafe base64>` and an empty value as `<label>@base64/=`.

The API writes a push's batch under the per-metric series cap (MONITORING_MAX_SERIES_PER_METRIC,
`ingest.metrics.write_metrics`): a push whose new series would take a metric past it is
refused whole with 422 `{"detail": "metric 'x' would have N series; the limit is M", "metric",
"limit"}` and stores nothing, not even its `push_time_seconds` point.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from monitoring_core.ingest.metrics import MetricBatch, SeriesKey, dimensions_key
from monitoring_core.ingest.points import MetricPoint
from monitoring_core.prometheus.parser import (
    MAX_LABEL_VALUE,
    Exposition,
    ExpositionError,
)

__all__ = [
    "GroupingKeyError",
    "KeyMemo",
    "parse_grouping_key",
    "samples_to_batch",
    "samples_to_points",
]

KeyMemo = dict[tuple[tuple[tuple[str, str], ...], str], SeriesKey]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SOURCE_SYSTEM = "pushgateway"
# Series keys remembered across pushes (~250 B each): a bound on memory, not on correctness
# (a key not remembered is encoded again, ~1 µs).
KEY_MEMO_LIMIT = 50_000


class GroupingKeyError(ValueError):
    """The URL's grouping key cannot be read."""


def _decode_b64(value: str) -> str:
    if value in ("", "="):
        return ""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise GroupingKeyError(f"invalid base64 value {value[:40]!r}") from None


def parse_grouping_key(segments: list[str]) -> dict[str, str]:
    """`["job", "nightly", "instance@base64", "..."]` -> `{"job": "nightly", "instance": ...}`."""
    if len(segments) < 2 or len(segments) % 2:
        raise GroupingKeyError("expected /metrics/job/<job>[/<label>/<value>...]")
    key: dict[str, str] = {}
    for name, value in zip(segments[::2], segments[1::2], strict=True):
        if name.endswith("@base64"):
            name, value = name[: -len("@base64")], _decode_b64(value)
        if not _LABEL_NAME.fullmatch(name):
            raise GroupingKeyError(f"invalid label name {name[:40]!r}")
        if name in key:
            raise GroupingKeyError(f"label {name!r} appears twice in the grouping key")
        if "\x00" in value or len(value) > MAX_LABEL_VALUE:
            # Base64 values can carry what the URL guard never sees: Postgres cannot store NUL.
            raise GroupingKeyError(f"label {name!r}: at most {MAX_LABEL_VALUE} characters, no NUL")
        key[name] = value
    if next(iter(key)) != "job" or not key["job"]:
        raise GroupingKeyError("the grouping key must start with a non-empty job")
    return key


def samples_to_points(
    exposition: Exposition, grouping_key: dict[str, str], *, now: datetime
) -> list[MetricPoint]:
    """Every sample as a point at `now`: labels become dimensions, the grouping key wins.

    Like the Pushgateway (since 1.0), samples carrying their own timestamp are refused.
    A `push_time_seconds` point per push lets an absence rule notice a job that stopped.
    """
    points = []
    for sample in exposition.samples:
        if sample.timestamp_ms is not None:
            raise ExpositionError(sample.line, "pushed samples must not carry timestamps")
        dims = {**sample.labels, **grouping_key} if sample.labels else grouping_key
        points.append(MetricPoint(sample.name, sample.value, now, dims, SOURCE_SYSTEM))
    points.append(
        MetricPoint("push_time_seconds", now.timestamp(), now, grouping_key, SOURCE_SYSTEM)
    )
    return points


def samples_to_batch(
    exposition: Exposition,
    grouping_key: dict[str, str],
    *,
    now: datetime,
    memo: KeyMemo | None = None,
) -> MetricBatch:
    """Like `samples_to_points`, straight into the ingest writer's batch (the fast path).

    `memo` maps (grouping key, series text) to the series key, so a job pushing the same
    series every few seconds pays the sorted-JSON encoding of its dimensions only once.
    """
    memo = {} if memo is None else memo
    if len(memo) >= KEY_MEMO_LIMIT:
        memo.clear()
    group = tuple(sorted(grouping_key.items()))
    batch = MetricBatch([], [], [], {})
    keys, values = batch.keys, batch.values
    for sample in exposition.samples:
        if sample.timestamp_ms is not None:
            raise ExpositionError(sample.line, "pushed samples must not carry timestamps")
        key = memo.get((group, sample.series))
        if key is None:
            dims = {**sample.labels, **grouping_key}
            key = (sample.name, dimensions_key(dims))
            memo[(group, sample.series)] = key
        keys.append(key)
        values.append(sample.value)
    push_key = ("push_time_seconds", dimensions_key(grouping_key))
    keys.append(push_key)
    values.append(now.timestamp())
    batch.times = [now] * len(keys)
    batch.sources = dict.fromkeys(keys, SOURCE_SYSTEM)
    return batch
