"""The remote-write 1.0 protobuf messages (`prometheus.WriteRequest`), built at import time.

The messages mirror Prometheus' `prompb/types.proto` and `prompb/remote.proto` (v2.42, package
`prometheus`, proto3, the gogoproto options stripped: they only change Go code), field for
field and number for number:

    WriteRequest   { repeated TimeSeries timeseries = 1; reserved 2;
                     repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2;
                     repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }
    Exemplar       { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4;
                     string unit = 5; }   MetricType: UNKNOWN=0 COUNTER GAUGE HISTOGRAM
                                          GAUGEHISTOGRAM SUMMARY INFO STATESET

Native histograms (`TimeSeries.histograms`, a message of its own upstream) are declared here
as `bytes`: the wire format is the same (length-delimited), and the receiver only needs to
know that they are there to refuse them. The descriptors are built with `descriptor_pb2` and
decoded by the `protobuf` runtime (no hand-written wire decoder, no generated module whose
gencode version must match the runtime's).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["METRIC_TYPES", "WriteRequest"]

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "prometheus"
# MetricMetadata.MetricType, by number (lower case, as Prometheus' metadata API spells them).
METRIC_TYPES = (
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
)


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
) -> None:
    field = message.field.add()
    field.name, field.number, field.type = name, number, kind
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="monitoring/prompb_remote.proto", package=_PACKAGE, syntax="proto3"
    )
    label = file.message_type.add(name="Label")
    _field(label, "name", 1, _F.TYPE_STRING)
    _field(label, "value", 2, _F.TYPE_STRING)
    sample = file.message_type.add(name="Sample")
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)
    exemplar = file.message_type.add(name="Exemplar")
    _field(exemplar, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name="Label")
    _field(exemplar, "value", 2, _F.TYPE_DOUBLE)
    _field(exemplar, "timestamp", 3, _F.TYPE_INT64)
    series = file.message_type.add(name="TimeSeries")
    _field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name="Label")
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name="Sample")
    _field(series, "exemplars", 3, _F.TYPE_MESSAGE, repeated=True, type_name="Exemplar")
    _field(series, "histograms", 4, _F.TYPE_BYTES, repeated=True)
    metadata = file.message_type.add(name="MetricMetadata")
    kind = metadata.enum_type.add(name="MetricType")
    for number, name in enumerate(METRIC_TYPES):
        kind.value.add(name=name.upper(), number=number)
    _field(metadata, "type", 1, _F.TYPE_ENUM, type_name="MetricMetadata.MetricType")
    _field(metadata, "metric_family_name", 2, _F.TYPE_STRING)
    _field(metadata, "help", 4, _F.TYPE_STRING)
    _field(metadata, "unit", 5, _F.TYPE_STRING)
    request = file.message_type.add(name="WriteRequest")
    _field(request, "timeseries", 1, _F.TYPE_MESSAGE, repeated=True, type_name="TimeSeries")
    _field(request, "metadata", 3, _F.TYPE_MESSAGE, repeated=True, type_name="MetricMetadata")
    request.reserved_range.add(start=2, end=3)
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    file = pool.Add(_file())
    return {
        name: message_factory.GetMessageClass(file.message_types_by_name[name])
        for name in ("WriteRequest", "TimeSeries", "Label", "Sample", "MetricMetadata")
    }


_CLASSES = _classes()
WriteRequest: Any = _CLASSES["WriteRequest"]
