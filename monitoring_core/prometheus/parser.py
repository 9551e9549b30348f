"""A strict parser of the Prometheus text exposition format 0.0.4 (what prometheus_client sends).

Pure: bytes or text in, samples out; every error names its 1-based line. Families' `_created`
companions (prometheus_client emits `X_created` gauges next to counters, histograms and
summaries) are dropped: they are creation timestamps, not measurements. Non-finite values
(NaN, ±Inf) are skipped and counted, since averages and rollups cannot merge them.
Reference: https://prometheus.io/docs/instrumenting/exposition_formats/ and
prometheus_client 0.26 `exposition.generate_latest`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["METRIC_TYPES", "Exposition", "ExpositionError", "Sample", "parse_exposition"]

METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})\s*(?:\{{(.*)\}})?\s+(\S+)(?:\s+(\S+))?\s*")
_LABEL = r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*'
_LABELS_FULL = re.compile(rf"(?:{_LABEL},)*(?:{_LABEL})?,?\s*")
_LABEL_ITER = re.compile(_LABEL)
_META = re.compile(rf"#\s*(HELP|TYPE)\s+({_NAME})(?:\s+(.*))?")
_ESCAPES = re.compile(r"\\(.)")


class ExpositionError(ValueError):
    """The text is not valid exposition format; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    timestamp_ms: int | None
    line: int


@dataclass
class Exposition:
    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # family name -> type
    skipped_non_finite: int = 0


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPES.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _labels(raw: str, line: int) -> dict[str, str]:
    if not _LABELS_FULL.fullmatch(raw):
        raise ExpositionError(line, f"malformed label set {{{raw[:80]}}}")
    labels: dict[str, str] = {}
    for name, value in _LABEL_ITER.findall(raw):
        if name in labels:
            raise ExpositionError(line, f"duplicate label {name!r}")
        labels[name] = _unescape(value)
    return labels


def _value(raw: str, line: int) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ExpositionError(line, f"value {raw[:40]!r} is not a number") from None


def _timestamp(raw: str | None, line: int) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ExpositionError(line, f"timestamp {raw[:40]!r} is not an integer") from None


class _State:
    """Bookkeeping of one parse: declared types and which families already had samples."""

    def __init__(self) -> None:
        self.out = Exposition()
        self.seen_samples: set[str] = set()
        self.help: set[str] = set()
        self.created: set[str] = set()

    def meta(self, kind: str, name: str, rest: str, line: int) -> None:
        if kind == "HELP":
            if name in self.help:
                raise ExpositionError(line, f"second HELP line for {name}")
            self.help.add(name)
            return
        mtype = rest.strip()
        if mtype not in METRIC_TYPES:
            raise ExpositionError(line, f"unknown metric type {mtype!r} for {name}")
        if name in self.out.types:
            raise ExpositionError(line, f"second TYPE line for {name}")
        if name in self.seen_samples:
            raise ExpositionError(line, f"TYPE for {name} after its samples")
        self.out.types[name] = mtype
        if mtype in _SUFFIXES:
            base = name[: -len("_total")] if name.endswith("_total") else name
            self.created.add(base + "_created")

    def family(self, name: str) -> tuple[str, str]:
        """(family name, type) of a sample name such as `x_bucket` of histogram `x`."""
        types = self.out.types
        if name in types:
            return name, types[name]
        for suffix in ("_bucket", "_sum", "_count", "_total"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                mtype = types.get(base)
                if mtype is not None and suffix in _SUFFIXES.get(mtype, ()):
                    return base, mtype
        return name, "untyped"


def _check_shape(mtype: str, name: str, labels: dict[str, str], line: int) -> None:
    if mtype == "histogram" and name.endswith("_bucket") and "le" not in labels:
        raise ExpositionError(line, f"histogram bucket {name} has no 'le' label")
    if mtype == "summary" and not name.endswith(("_sum", "_count")) and "quantile" not in labels:
        raise ExpositionError(line, f"summary sample {name} has no 'quantile' label")


def _sample(state: _State, text: str, line: int) -> None:
    match = _SAMPLE.fullmatch(text)
    if match is None:
        raise ExpositionError(line, f"cannot parse sample {text[:80]!r}")
    name, raw_labels, raw_value, raw_ts = match.groups()
    labels = _labels(raw_labels, line) if raw_labels else {}
    value = _value(raw_value, line)
    timestamp = _timestamp(raw_ts, line)
    family, mtype = state.family(name)
    state.seen_samples.add(family)
    _check_shape(mtype, name, labels, line)
    if name in state.created or family in state.created:
        return
    if not math.isfinite(value):
        state.out.skipped_non_finite += 1
        return
    state.out.samples.append(Sample(name, labels, value, timestamp, line))


def parse_exposition(body: bytes | str) -> Exposition:
    """Parse a whole exposition; raises ExpositionError naming the first bad line."""
    if isinstance(body, bytes):
        try:
            decoded = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = body[: exc.start].count(b"\n") + 1
            raise ExpositionError(line, "text is not valid UTF-8") from None
    else:
        decoded = body
    state = _State()
    for number, raw in enumerate(decoded.split("\n"), start=1):
        text = raw.strip()
        if not text:
            continue
        if text[0] == "#":
            meta = _META.fullmatch(text)
            if meta is not None:
                state.meta(meta.group(1), meta.group(2), meta.group(3) or "", number)
            elif re.match(r"#\s*(HELP|TYPE)\b", text):
                raise ExpositionError(number, f"malformed {text.split()[1]} line")
            continue
        _sample(state, text, number)
    return state.out
