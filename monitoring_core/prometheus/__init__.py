"""Prometheus compatibility: the text exposition parser and the Pushgateway grouping key."""

from monitoring_core.prometheus.parser import (
    Exposition,
    ExpositionError,
    Sample,
    parse_exposition,
)
from monitoring_core.prometheus.pushgateway import (
    GroupingKeyError,
    parse_grouping_key,
    samples_to_batch,
    samples_to_points,
)

__all__ = [
    "Exposition",
    "ExpositionError",
    "GroupingKeyError",
    "Sample",
    "parse_exposition",
    "parse_grouping_key",
    "samples_to_batch",
    "samples_to_points",
]
