"""OTLP/HTTP receiver against a real server, fed by the unmodified OpenTelemetry SDK and its
OTLP/HTTP (protobuf) exporters, and by hand-written OTLP/JSON and bad inputs (no 500)."""

from __future__ import annotations

import gzip
import json
import logging
import time
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, text

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test"})


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def test_sdk_spans_become_spans_and_api_timings(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    exporter = OTLPSpanExporter(
        endpoint=f"{api_server}/v1/traces", headers=_auth(ingest_key), compression=Compression.Gzip
    )
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span(
        "POST /api/pay/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/api/pay/{id}",
            "http.response.status_code": 502,
            "amount": 12.5,
        },
    ) as server:
        with tracer.start_as_current_span("charge card") as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "provider timeout"))
        trace_id = format(server.get_span_context().trace_id, "032x")
    provider.shutdown()

    spans = _rows(
        engine,
        "SELECT name, kind, service, parent_span_id, status_code, status_message, attributes, "
        "events, resource FROM spans WHERE trace_id = :t ORDER BY kind DESC",
        t=trace_id,
    )
    assert [s.name for s in spans] == ["POST /api/pay/{id}", "charge card"]
    root, child_row = spans
    assert root.kind == 2 and root.service == "checkout" and root.parent_span_id is None
    assert root.attributes["http.route"] == "/api/pay/{id}" and root.attributes["amount"] == 12.5
    assert root.resource["deployment.environment"] == "test"
    assert child_row.parent_span_id is not None and child_row.status_code == 2
    assert child_row.status_message == "provider timeout"
    assert child_row.events[0]["name"] == "retry"
    assert child_row.events[0]["attributes"] == {"attempt": 2}
    timings = _rows(engine, "SELECT method, endpoint, status_code FROM api_timings")
    assert [tuple(t) for t in timings] == [("POST", "/api/pay/{id}", 502)]


def test_sdk_metrics_cumulative_counter_becomes_increases(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    exporter = OTLPMetricExporter(endpoint=f"{api_server}/v1/metrics", headers=_auth(ingest_key))
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("shop")
    orders = meter.create_counter("orders.placed")
    queue = meter.create_up_down_counter("queue.depth")
    latency = meter.create_histogram("checkout.duration", unit="ms")
    orders.add(5, {"region": "uk"})
    queue.add(7)
    latency.record(120.0)
    latency.record(80.0)
    assert provider.force_flush()
    orders.add(3, {"region": "uk"})
    queue.add(-2)
    assert provider.force_flush()
    provider.shutdown()

    def values(name: str) -> list[float]:
        return [
            r.value
            for r in _rows(
                engine,
                "SELECT p.value FROM metric_points p JOIN metric_series s ON s.id = p.series_id "
                "WHERE s.name = :n ORDER BY p.time, p.value",
                n=name,
            )
        ]

    # three exports (two flushes, then shutdown's): cumulative 5, 8, 8 -> increases 5, 3, 0
    assert values("orders.placed") == [5.0, 3.0, 0.0]
    assert values("queue.depth") == [7.0, 5.0, 5.0]  # an up-down counter is a gauge
    assert values("checkout.duration.count") == [2.0, 0.0, 0.0]
    assert values("checkout.duration.sum") == [200.0, 0.0, 0.0]
    dims = _rows(engine, "SELECT dimensions FROM metric_series WHERE name = 'orders.placed'")
    assert dims[0].dimensions == {"region": "uk", "service": "checkout", "environment": "test"}


def test_sdk_logs_carry_trace_ids(api_server: str, ingest_key: str, engine: Engine) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{api_server}/v1/logs", headers={"X-API-Key": ingest_key})
        )
    )
    logger = logging.getLogger("test_otlp.shop")
    logger.propagate = False
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    tracer_provider = TracerProvider(resource=RESOURCE)
    try:
        with tracer_provider.get_tracer("shop").start_as_current_span("pay") as span:
            logger.error("payment provider refused card %s", "visa")
            trace_id = format(span.get_span_context().trace_id, "032x")
        logger.info("all good")
        provider.force_flush()
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    logs = _rows(
        engine,
        "SELECT body, severity_number, severity_text, trace_id, span_id, service "
        "FROM log_records ORDER BY time",
    )
    assert [(r.body, r.severity_number, r.severity_text) for r in logs] == [
        ("payment provider refused card visa", 17, "ERROR"),
        ("all good", 9, "INFO"),
    ]
    assert logs[0].trace_id == trace_id and logs[0].span_id is not None
    assert logs[1].trace_id is None and logs[0].service == "checkout"


def _json_spans(trace_hex: str, start_ns: int, **extra: Any) -> dict[str, Any]:
    span = {
        "traceId": trace_hex,
        "spanId": "00f067aa0ba902b7",
        "name": "GET /health",
        "kind": 2,  # enum as integer
        "startTimeUnixNano": str(start_ns),  # int64 as string
        "endTimeUnixNano": str(start_ns + 5_000_000),
        "attributes": [
            {"key": "http.method", "value": {"stringValue": "GET"}},
            {"key": "http.status_code", "value": {"intValue": "200"}},
            {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
        ],
        "status": {"code": "STATUS_CODE_OK"},  # enum as name
        "someFutureField": {"x": 1},  # unknown fields are ignored
        **extra,
    }
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]
                },
                "scopeSpans": [{"scope": {"name": "manual"}, "spans": [span]}],
            }
        ]
    }


def test_json_encoding_quirks(api_server: str, ingest_key: str, engine: Engine) -> None:
    trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736"
    start = time.time_ns()
    response = httpx.post(
        f"{api_server}/v1/traces", json=_json_spans(trace_hex, start), headers=_auth(ingest_key)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}  # nothing refused: no partial_success
    row = _rows(engine, "SELECT * FROM spans")[0]
    assert (row.trace_id, row.span_id, row.service, row.kind) == (
        trace_hex,
        "00f067aa0ba902b7",
        "web",
        2,
    )
    assert row.status_code == 1 and row.attributes["tags"] == ["a"]
    assert row.attributes["http.status_code"] == 200 and row.duration_ms == pytest.approx(5.0)
    timing = _rows(engine, "SELECT method, endpoint, status_code FROM api_timings")
    assert [tuple(t) for t in timing] == [("GET", "/health", 200)]  # route from the span name


def test_partial_success_in_both_encodings(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    start = time.time_ns()
    good = _json_spans("4bf92f3577b34da6a3ce929d0e0e4736", start)
    spans = good["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "traceId": "zz-not-hex", "spanId": "00f067aa0ba902b8"})
    spans.append({**spans[0], "spanId": "00f067aa0ba902b9", "startTimeUnixNano": "1000"})
    response = httpx.post(f"{api_server}/v1/traces", json=good, headers=_auth(ingest_key))
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64 as a string in OTLP/JSON
    assert "trace_id" in partial["errorMessage"]
    # the same refusals in protobuf
    message = trace_service_pb2.ExportTraceServiceRequest()
    from google.protobuf import json_format

    json_format.ParseDict(
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{"traceId": "", "spanId": "AAAAAAAAAAE="}]}]}
            ]
        },
        message,
    )
    response = httpx.post(
        f"{api_server}/v1/traces",
        content=message.SerializeToString(),
        headers={**_auth(ingest_key), "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert _rows(engine, "SELECT count(*) AS n FROM spans")[0].n == 1


def _status(response: httpx.Response) -> Any:
    if response.headers["content-type"].startswith("application/x-protobuf"):
        return status_pb2.Status.FromString(response.content)
    body = response.json()
    return status_pb2.Status(code=body.get("code", 0), message=body.get("message", ""))


@pytest.mark.parametrize(
    ("content_type", "body", "encoding", "status", "fragment"),
    [
        ("application/x-protobuf", b"\xff\xff\xff\xff", None, 400, "not a protobuf"),
        ("application/json", b"{not json", None, 400, "malformed JSON"),
        ("application/json", b"[1, 2]", None, 400, "must be a JSON object"),
        ("application/json", b'{"resourceSpans": "x"}', None, 400, "not an OTLP/JSON"),
        ("application/json", b"\x1f\x8b garbage", "gzip", 400, "decompressed"),
        (
            "application/json",
            gzip.compress(b" " * 6_000_000, mtime=0),
            "gzip",
            413,
            "over the limit",
        ),
        ("text/plain", b"hello", None, 415, "unsupported content type"),
        ("application/json", b"{}", "br-unknown", 415, "content encoding"),
        ("application/json", b'{"resourceSpans": [' * 100 + b"]}" * 100, None, 400, ""),
    ],
)
def test_bad_input_answers_a_status_never_500(
    api_server: str,
    ingest_key: str,
    content_type: str,
    body: bytes,
    encoding: str | None,
    status: int,
    fragment: str,
) -> None:
    headers = {**_auth(ingest_key), "Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = httpx.post(f"{api_server}/v1/traces", content=body, headers=headers)
    assert response.status_code == status, response.text
    answer = _status(response)
    assert fragment in answer.message
    assert answer.code in (3, 8)


def test_auth_errors_are_status_bodies(api_server: str, engine: Engine, admin_key: str) -> None:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        read_key = create_api_key(conn, name="reader", scope=ApiScope.READ)
    url = f"{api_server}/v1/logs"
    proto = {"Content-Type": "application/x-protobuf"}
    missing = httpx.post(url, content=b"", headers=proto)
    assert missing.status_code == 401 and _status(missing).code == 16
    wrong = httpx.post(url, content=b"", headers={**proto, **_auth(read_key)})
    assert wrong.status_code == 403 and _status(wrong).code == 7
    assert httpx.post(url, content=b"", headers={**proto, **_auth(admin_key)}).status_code == 200
    # a query-string key is not accepted here (OTel exporters send headers)
    assert httpx.post(f"{url}?key={admin_key}", content=b"", headers=proto).status_code == 401


def test_rate_limit_is_429_with_retry_after(api_server: str, engine: Engine) -> None:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        key = create_api_key(conn, name="slow", scope=ApiScope.INGEST, rate_limit_per_minute=1)
    headers = {**_auth(key), "Content-Type": "application/json"}
    assert httpx.post(f"{api_server}/v1/metrics", content=b"{}", headers=headers).status_code == 200
    limited = httpx.post(f"{api_server}/v1/metrics", content=b"{}", headers=headers)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert _status(limited).code == 8


def test_database_unavailable_is_503_with_retry_after(
    api_server: str, api_app: Any, ingest_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from monitoring_core.api import routes_otlp

    def down(app: Any, request: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setitem(routes_otlp._STORES, routes_otlp.Signal.LOGS, down)
    response = httpx.post(
        f"{api_server}/v1/logs",
        content=b"{}",
        headers={**_auth(ingest_key), "Content-Type": "application/json"},
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert _status(response).code == 14


def _sum_request(start_ns: int, time_ns: int, value: int) -> dict[str, Any]:
    point = {"startTimeUnixNano": str(start_ns), "timeUnixNano": str(time_ns), "asInt": str(value)}
    metric = {
        "name": "jobs.done",
        "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [point]},
    }
    return {"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}


def test_json_logs_and_cumulative_sums_across_a_restart(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    now = time.time_ns()
    record = {
        "timeUnixNano": str(now),
        "severityNumber": 17,
        "severityText": "ERROR",
        "body": {"kvlistValue": {"values": [{"key": "order", "value": {"intValue": "7"}}]}},
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "attributes": [{"key": "user", "value": {"stringValue": "ann"}}],
    }
    logs = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "jobs"}}]
                },
                "scopeLogs": [{"logRecords": [record, {**record, "timeUnixNano": "0"}]}],
            }
        ]
    }
    headers = {**_auth(ingest_key), "Content-Type": "application/json"}
    body = gzip.compress(json.dumps(logs).encode(), mtime=0)
    response = httpx.post(
        f"{api_server}/v1/logs", content=body, headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["partialSuccess"]["rejectedLogRecords"] == "1"  # no time at all
    [row] = _rows(engine, "SELECT * FROM log_records")
    assert (row.service, row.severity_number, row.body, row.attributes) == (
        "jobs",
        17,
        '{"order":7}',
        {"user": "ann"},
    )
    assert row.trace_id == "5b8efff798038103d269b633813fc60c" and row.span_id == "eee19b7ec3c1b174"

    start = now - 60_000_000_000
    for start_ns, time_ns, value in [
        (start, now - 2_000_000_000, 10),  # started a minute ago: 10 is an increase
        (start, now - 1_000_000_000, 25),  # +15
        (now - 500_000_000, now, 4),  # the process restarted: +4, not -21
    ]:
        response = httpx.post(
            f"{api_server}/v1/metrics", json=_sum_request(start_ns, time_ns, value), headers=headers
        )
        assert response.status_code == 200 and response.json() == {}
    values = _rows(
        engine,
        "SELECT p.value FROM metric_points p JOIN metric_series s ON s.id = p.series_id "
        "WHERE s.name = 'jobs.done' ORDER BY p.time",
    )
    assert [v.value for v in values] == [10.0, 15.0, 4.0]


def test_point_rate_counts_spans(api_server: str, engine: Engine) -> None:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        key = create_api_key(conn, name="few points", scope=ApiScope.INGEST, points_per_minute=3)
    payload = _json_spans("4bf92f3577b34da6a3ce929d0e0e4736", time.time_ns())
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "spanId": "00f067aa0ba902b8"})
    first = httpx.post(f"{api_server}/v1/traces", json=payload, headers=_auth(key))
    assert first.status_code == 200, first.text
    second = httpx.post(f"{api_server}/v1/traces", json=payload, headers=_auth(key))
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    assert "point rate" in _status(second).message
    assert _rows(engine, "SELECT count(*) AS n FROM spans")[0].n == 2


def test_json_batch_log_route(api_server: str, ingest_key: str, engine: Engine) -> None:
    url = f"{api_server}/api/monitoring/logs"
    good = [
        {"service": "payments", "severity": "error", "body": "card declined",
         "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736", "attributes": {"provider": "stripe"}},
        {"service": "search", "body": "served", "severity_number": 5},
    ]  # fmt: skip
    response = httpx.post(url, json=good, headers=_auth(ingest_key))
    assert response.status_code == 202 and response.json() == {"accepted": 2}
    rows = _rows(
        engine, "SELECT service, severity_number, severity_text, trace_id FROM log_records"
    )
    assert sorted(tuple(r) for r in rows) == [
        ("payments", 17, "ERROR", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("search", 5, None, None),
    ]
    bad = [
        {"service": "x"},
        {"service": "x", "body": "b", "severity": "LOUD", "trace_id": "00" * 16, "extra": 1},
        {"service": "x", "body": "b", "attributes": [1]},
    ]
    response = httpx.post(url, json=bad, headers=_auth(ingest_key))
    assert response.status_code == 422
    problems = {(p["index"], p["field"]) for p in response.json()["detail"]}
    assert problems == {(0, "body"), (1, "severity"), (1, "trace_id"), (1, "extra"),
                        (2, "attributes")}  # fmt: skip
    assert httpx.post(url, json=good).status_code == 401
