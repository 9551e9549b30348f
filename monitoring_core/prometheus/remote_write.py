"""Prometheus remote write 1.0: a snappy-compressed `WriteRequest` as metric points.

What the receiver does with a request (the specification's words in quotes):
- the body is snappy *block* format ("not the framed format"), the message `prometheus.
  WriteRequest` (`prompb.py`); an unreadable body is a 400, which senders do not retry;
- every series needs a `__name__` ("MUST"), label names match `[a-zA-Z_][a-zA-Z0-9_]*` and
  appear once; the name becomes the metric name, every other label a dimension (a label
  with an empty value is the same as no label, as in Prometheus);
- a sample's timestamp is milliseconds since the epoch; its value is stored as is, except
  NaN, since the metric store holds finite numbers only: Prometheus' staleness markers
  (`0x7ff0000000000002`) go to `metric_stale_markers` (`staleness.py`: they end the series
  for PromQL's instant selectors, as in Prometheus), other NaNs are dropped and counted;
- invalid series or samples (no name, bad label, a timestamp outside what the store accepts,
  an infinite or out-of-range value) are left out and named in a 400 answer, the rest is
  stored: a 400 tells the sender not to retry, so the valid part must not be lost;
- `metadata` (type, help, unit per metric family) goes to `metric_catalog`; without it a
  `_total` name is recorded as a counter and a `_bucket` series with an `le` label as a
  histogram family (`x_bucket`, `x_sum`, `x_count` belong to `x`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cramjam
import numpy as np
from google.protobuf.message import DecodeError

from monitoring_core.ingest.metrics import MetricBatch, SeriesKey, dimensions_key
from monitoring_core.ingest.validate import MAX_MAGNITUDE, Limits
from monitoring_core.prometheus.parser import MAX_LABEL_VALUE, MAX_LABELS
from monitoring_core.prometheus.prompb import METRIC_TYPES, WriteRequest
from monitoring_core.prometheus.staleness import is_stale_marker

__all__ = [
    "CatalogEntry",
    "Converted",
    "RemoteWriteError",
    "convert",
    "decode",
    "uncompressed_length",
]

SOURCE_SYSTEM = "prometheus"
MAX_PROBLEMS = 20  # problems named in a 400 answer (the count says how many in all)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RemoteWriteError(ValueError):
    """The body cannot be read as a remote-write request (400, not retried)."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What is known of a metric family: type, help, unit; `declared` when from metadata."""

    name: str
    metric_type: str
    help: str = ""
    unit: str = ""
    declared: bool = False


@dataclass
class Converted:
    """The storable part of a request, and what was left out and why."""

    batch: MetricBatch
    catalog: dict[str, CatalogEntry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    refused: int = 0  # samples left out as invalid
    dropped_nan: int = 0  # NaN samples other than staleness markers: not stored
    stale_keys: list[SeriesKey] = field(default_factory=list)  # staleness markers: series
    stale_times: list[datetime] = field(default_factory=list)  # … and their instants
    histograms: int = 0  # native histogram samples (not supported: refused)

    def problem(self, message: str, samples: int) -> None:
        self.refused += samples
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)


def uncompressed_length(body: bytes) -> int:
    """The length a snappy block declares in its header (a varint), before decompressing it."""
    length, shift = 0, 0
    for i, byte in enumerate(body[:5]):
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
        if i == 4:
            break
    raise RemoteWriteError("the body is not snappy block format (no length header)")


def decode(body: bytes, *, max_bytes: int) -> WriteRequest:
    """The request in a snappy-compressed body; RemoteWriteError (400) when unreadable,
    OverflowError when it declares more than `max_bytes` once decompressed (413)."""
    declared = uncompressed_length(body)
    if declared > max_bytes:
        raise OverflowError(f"the body decompresses to {declared} bytes, over {max_bytes}")
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise RemoteWriteError(f"the body is not valid snappy block data: {exc}") from None
    try:
        return WriteRequest.FromString(raw)
    except DecodeError as exc:
        raise RemoteWriteError(f"the body is not a prometheus.WriteRequest: {exc}") from None


def _labels(series: object) -> tuple[str, dict[str, str]] | str:
    """(metric name, dimensions) or the reason the series' labels are invalid."""
    name = ""
    dims: dict[str, str] = {}
    seen: set[str] = set()
    for label in series.labels:  # type: ignore[attr-defined]
        key, value = label.name, label.value
        if key in seen:
            return f"label {key[:60]!r} appears twice"
        seen.add(key)
        if not _LABEL_NAME.fullmatch(key):
            return f"invalid label name {key[:60]!r}"
        if "\x00" in value or len(value) > MAX_LABEL_VALUE:
            return f"label {key!r}: at most {MAX_LABEL_VALUE} characters, no NUL"
        if key == "__name__":
            name = value
        elif value:
            dims[key] = value
    if not name:
        return "a series without __name__"
    if len(name) > 200:
        return f"metric name {name[:60]!r}… is longer than 200 characters"
    if len(dims) > MAX_LABELS:
        return f"{name}: more than {MAX_LABELS} labels"
    return name, dims


def _moment(moments: dict[int, datetime], ms: int) -> datetime:
    moment = moments[ms] = _EPOCH + timedelta(milliseconds=ms)
    return moment


def _series_desc(name: str, dims: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v[:40]}"' for k, v in list(dims.items())[:6])
    return f"{name}{{{inner}}}"


def convert(request: WriteRequest, *, limits: Limits) -> Converted:
    """The request's samples as an ingest batch; invalid parts recorded in `problems`."""
    out = Converted(MetricBatch([], [], [], {}))
    keys, times, values = out.batch.keys, out.batch.times, out.batch.values
    moments: dict[int, datetime] = {}
    oldest_ms = (limits.oldest - _EPOCH) // timedelta(milliseconds=1)
    newest_ms = (limits.newest - _EPOCH) // timedelta(milliseconds=1)
    for series in request.timeseries:
        if series.histograms:
            out.histograms += len(series.histograms)
            out.problem("native histograms are not supported; send classic buckets", 0)
        labelled = _labels(series)
        if isinstance(labelled, str):
            out.problem(labelled, len(series.samples))
            continue
        name, dims = labelled
        key = (name, dimensions_key(dims))  # its own size: it lives on in the series cache
        _infer_catalog(out.catalog, name, dims)
        pairs = [(sample.timestamp, sample.value) for sample in series.samples]
        if not pairs:
            continue
        # int64 ms fit float64 exactly up to 2^53 (year 285,000); larger ones fail the range
        both = np.array(pairs, dtype=np.float64)
        stamps, numbers = both[:, 0], both[:, 1]
        nan = np.isnan(numbers)  # staleness markers (and NaN results) are not points
        in_time = (stamps >= oldest_ms) & (stamps <= newest_ms)
        ok = ~nan & in_time & (np.abs(np.where(nan, 0.0, numbers)) <= MAX_MAGNITUDE)
        kept = int(ok.sum())
        if nan.any():
            stale = is_stale_marker(numbers) & in_time
            out.stale_times.extend(
                moments[t] if t in moments else _moment(moments, t)
                for t in stamps[stale].astype(np.int64).tolist()
            )
            out.stale_keys.extend([key] * int(stale.sum()))
            out.dropped_nan += int((nan & ~is_stale_marker(numbers)).sum())
        bad = len(pairs) - kept - int(nan.sum())
        if kept:
            # a target's series share their scrape instants: one datetime per instant
            times.extend(
                [
                    moments[t] if t in moments else _moment(moments, t)
                    for t in stamps[ok].astype(np.int64).tolist()
                ]
            )
            values.extend(numbers[ok].tolist())
            keys.extend([key] * kept)
            out.batch.sources[key] = SOURCE_SYSTEM  # per series, not per sample
        if bad:
            out.problem(
                f"{_series_desc(name, dims)}: {bad} samples outside the accepted time range "
                f"({limits.oldest:%Y-%m-%dT%H:%MZ} to {limits.newest:%Y-%m-%dT%H:%MZ}) or "
                f"|value| > 2^53",
                bad,
            )
    _declared_catalog(out.catalog, request.metadata)
    return out


def _infer_catalog(catalog: dict[str, CatalogEntry], name: str, dims: dict[str, str]) -> None:
    if name in catalog:
        return
    if name.endswith("_bucket") and "le" in dims:
        family = name[: -len("_bucket")]
        catalog.setdefault(family, CatalogEntry(family, "histogram"))
    elif name.endswith("_total"):
        catalog[name] = CatalogEntry(name, "counter")


def _declared_catalog(catalog: dict[str, CatalogEntry], metadata: Iterable[object]) -> None:
    for item in metadata:
        name = item.metric_family_name  # type: ignore[attr-defined]
        if not name or len(name) > 200 or "\x00" in name:
            continue
        kind = item.type  # type: ignore[attr-defined]
        metric_type = METRIC_TYPES[kind] if 0 <= kind < len(METRIC_TYPES) else "unknown"
        help_text = item.help[:2000].replace("\x00", "")  # type: ignore[attr-defined]
        unit = item.unit[:100].replace("\x00", "")  # type: ignore[attr-defined]
        catalog[name] = CatalogEntry(name, metric_type, help_text, unit, declared=True)
