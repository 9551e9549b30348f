"""Pure OTLP mapping rules: cumulative sums across restarts, severities, values, ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from monitoring_core.ingest.validate import Limits
from monitoring_core.otlp.decode import JSON, Signal, UnreadableBody, parse_request
from monitoring_core.otlp.logs import severity_number
from monitoring_core.otlp.metrics import MetricsResult, cumulative_increase, observations
from monitoring_core.otlp.traces import server_timing
from monitoring_core.otlp.values import any_value, hex_id

OLDEST_NS = 1_000


@pytest.mark.parametrize(
    ("previous", "start", "value", "expected"),
    [
        (None, 5_000, 7.0, 7.0),  # a counter that started inside the window: all of it
        (None, 10, 7.0, None),  # started before the window: only a baseline
        (None, 0, 7.0, None),  # no start time: a baseline
        ((5_000, 7.0), 5_000, 10.0, 3.0),  # same run: the difference
        ((5_000, 7.0), 5_000, 7.0, 0.0),
        ((5_000, 7.0), 9_000, 2.0, 2.0),  # restarted (new start time): the new value
        ((5_000, 7.0), 5_000, 4.0, 4.0),  # went down without a new start: a reset
    ],
)
def test_cumulative_increase(
    previous: tuple[int, float] | None, start: int, value: float, expected: float | None
) -> None:
    assert cumulative_increase(previous, start, value, OLDEST_NS) == expected


@pytest.mark.parametrize(
    ("number", "text", "expected"),
    [
        (17, "ERROR", 17),
        (0, "warning", 13),
        (0, "Info", 9),
        (0, "", 0),
        (0, "odd", 0),
        (99, "", 24),
    ],
)
def test_severity_number(number: int, text: str, expected: int) -> None:
    assert severity_number(number, text) == expected


def test_any_value_kinds() -> None:
    value = AnyValue()
    value.kvlist_value.values.add(key="a", value=AnyValue(int_value=3))
    value.kvlist_value.values.add(key="b", value=AnyValue(string_value="x\x00y"))
    value.kvlist_value.values.add(key="c", value=AnyValue(double_value=float("nan")))
    value.kvlist_value.values.add(key="d", value=AnyValue(bytes_value=b"\x01\xff"))
    assert any_value(value) == {"a": 3, "b": "x\ufffdy", "c": "nan", "d": "01ff"}
    assert any_value(AnyValue()) is None


def test_hex_ids() -> None:
    assert hex_id(bytes(range(16)), 16) == "000102030405060708090a0b0c0d0e0f"
    assert hex_id(bytes(16), 16) is None  # all zero is "no id"
    assert hex_id(b"\x01" * 8, 16) is None


@pytest.mark.parametrize(
    ("attrs", "name", "status", "expected"),
    [
        ({"http.request.method": "GET", "http.route": "/a/{id}"}, "x", 0, ("GET", "/a/{id}", 200)),
        ({"http.method": "post", "http.status_code": 503}, "POST /pay", 0, ("POST", "/pay", 503)),
        ({"http.request.method": "GET"}, "GET /b", 2, ("GET", "/b", 500)),
        ({"http.request.method": "GET"}, "handler", 0, None),  # no route anywhere
        ({"rpc.system": "grpc"}, "Get", 0, None),  # not HTTP
        ({"http.request.method": "GET", "http.route": "/", "http.response.status_code": "x"},
         "GET /", 0, None),
    ],
)  # fmt: skip
def test_server_timing(
    attrs: dict[str, object], name: str, status: int, expected: tuple[str, str, int] | None
) -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    row = server_timing(start, 12.0, attrs, name, status)
    assert (row[1:4] if row else None) == expected


def test_json_metrics_map_to_observations() -> None:
    now_ns = 1_780_000_000_000_000_000
    body = (
        b'{"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value":'
        b' {"stringValue": "api"}}, {"key": "process.pid", "value": {"intValue": "42"}}]},'
        b' "scopeMetrics": [{"metrics": [{"name": "temp", "gauge": {"dataPoints":'
        b' [{"timeUnixNano": "%d", "asInt": "21", "attributes": [{"key": "room", "value":'
        b' {"stringValue": "b"}}]}]}}, {"name": "reqs", "sum": {"aggregationTemporality": 2,'
        b' "isMonotonic": true, "dataPoints": [{"startTimeUnixNano": "%d", "timeUnixNano": "%d",'
        b' "asDouble": 5}]}}, {"name": "late", "gauge": {"dataPoints": [{"timeUnixNano": "5",'
        b' "asDouble": 1}]}}]}]}]}' % (now_ns, now_ns - 10, now_ns)
    )
    request = parse_request(Signal.METRICS, body, JSON)
    moment = datetime.fromtimestamp(now_ns / 1e9, UTC)
    limits = Limits(moment - timedelta(days=1), moment + timedelta(days=1))
    result = MetricsResult()
    obs = observations(request, limits, result)
    assert [(o.name, o.value, o.kind, dict(o.dimensions)) for o in obs] == [
        ("temp", 21.0, "gauge", {"room": "b", "service": "api"}),
        ("reqs", 5.0, "cumulative", {"service": "api"}),  # process.pid is no dimension
    ]
    assert result.rejected == 1 and "late" in result.reason


def test_unreadable_json_bodies() -> None:
    for body in (b"{", b"[]", b'{"resourceLogs": [{"scopeLogs": 3}]}', b"[" * 100 + b"]" * 100):
        with pytest.raises(UnreadableBody):
            parse_request(Signal.LOGS, body, JSON)
    assert parse_request(Signal.LOGS, b"", JSON) == parse_request(Signal.LOGS, b"{}", JSON)
    message = metrics_service_pb2.ExportMetricsServiceRequest()
    assert parse_request(Signal.METRICS, b"", "application/x-protobuf") == message
