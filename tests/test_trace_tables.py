"""The Traces page's tables: times in words, durations with units, attributes and events as
rows (ui.trace_tables), from rows shaped as the trace queries return them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ui import trace_tables

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 14:00 in London (BST)
START = datetime(2026, 6, 10, 12, 58, 30, 250000, tzinfo=UTC)


def test_it_lists_traces_with_times_in_words_and_durations_with_units() -> None:
    found = [{"first_seen": START, "service": "checkout", "name": "POST /api/pay",
              "duration_ms": 1234.5, "spans": 7, "errors": 1, "services": 3,
              "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}]  # fmt: skip
    (row,) = trace_tables.trace_rows(found, LONDON, NOW)
    assert row["Started"] == "today 13:58:30"  # London, not UTC; no microseconds, no offset
    assert row["Duration"] == "1.23 s"
    assert list(row) == ["Started", "Service", "Root operation", "Duration", "Spans", "Errors",
                         "Services", "Trace id"]  # fmt: skip


def test_it_writes_spans_kinds_and_statuses_in_words() -> None:
    spans = [
        {"offset_ms": 0.0, "duration_ms": 850.0, "service": "checkout", "name": "POST /api/pay",
         "depth": 0, "kind": 2, "status_code": 0, "span_id": "a1"},
        {"offset_ms": 20.0, "duration_ms": 0.35, "service": "db", "name": "SELECT",
         "depth": 2, "kind": 3, "status_code": 2, "span_id": "a2"},
    ]  # fmt: skip
    rows = trace_tables.span_rows(spans)
    assert [
        (r["Starts at"], r["Duration"], r["Operation"], r["Kind"], r["Status"]) for r in rows
    ] == [
        ("+0 ms", "850 ms", "POST /api/pay", "Server", "Unset"),
        ("+20 ms", "0.35 ms", "· · SELECT", "Client", "Error"),
    ]


def test_it_shows_attributes_as_name_value_rows_by_name() -> None:
    rows = trace_tables.attribute_rows(
        {"http.route": "/api/pay", "http.response.status_code": 502, "retry": True,
         "tags": ["a", "b"], "ratio": 0.30000000000000004}
    )  # fmt: skip
    assert rows == [
        {"Attribute": "http.response.status_code", "Value": "502"},
        {"Attribute": "http.route", "Value": "/api/pay"},
        {"Attribute": "ratio", "Value": "0.3"},
        {"Attribute": "retry", "Value": "true"},
        {"Attribute": "tags", "Value": "a, b"},
    ]
    assert trace_tables.attribute_rows(None) == []


def test_it_lists_events_at_their_offset_from_the_span_start_in_time_order() -> None:
    events = [
        {"name": "exception", "time": (START + timedelta(milliseconds=1500)).isoformat(),
         "attributes": {"exception.type": "Timeout", "exception.message": "no reply"}},
        {"name": "retry", "time": (START + timedelta(milliseconds=12.7)).isoformat(),
         "attributes": {"attempt": 2}},
        {"name": "odd", "time": "not a time", "attributes": {}},
    ]  # fmt: skip
    assert trace_tables.event_rows(events, START) == [
        {"At": "+13 ms", "Event": "retry", "Attributes": "attempt: 2"},
        {"At": "+1.50 s", "Event": "exception",
         "Attributes": "exception.message: no reply, exception.type: Timeout"},
        {"At": "—", "Event": "odd", "Attributes": "—"},
    ]  # fmt: skip
    assert trace_tables.event_rows(None, START) == []


def test_it_says_errors_and_logs_of_a_trace_in_words() -> None:
    (error,) = trace_tables.error_rows(
        [{"time": START, "service_name": "payments", "severity": "error", "message": "timed out",
          "error_type": "GatewayTimeout", "group_id": 12}], LONDON, NOW
    )  # fmt: skip
    assert (error["Time"], error["Severity"], error["Error group"]) == (
        "today 13:58:30", "Error", "#12"
    )  # fmt: skip
    (log,) = trace_tables.log_rows(
        [{"time": START - timedelta(days=1), "service": "payments", "severity_text": "ERROR",
          "body": "payment provider timed out", "span_id": None}], LONDON, NOW
    )  # fmt: skip
    assert (log["Time"], log["Message"], log["Span id"]) == (
        "yesterday 13:58:30", "payment provider timed out", "—"
    )  # fmt: skip


def test_the_waterfall_hover_gives_sub_millisecond_spans_their_digits() -> None:
    from ui.waterfall import waterfall_figure

    rows = [{"depth": 0, "service": "web", "name": "GET /", "status_code": 1, "offset_ms": 0.0,
             "duration_ms": 1250.0, "kind": 2},
            {"depth": 1, "service": "db", "name": "SELECT 1", "status_code": 1, "offset_ms": 20.0,
             "duration_ms": 0.35, "kind": 3}]  # fmt: skip
    bars = waterfall_figure(rows).data[0]
    assert [list(c) for c in bars.customdata] == [
        ["0 ms", "1.25 s", "server"],
        ["20 ms", "0.35 ms", "client"],  # was "0 ms"
    ]
    assert "starts at +%{customdata[0]}, lasts %{customdata[1]}" in bars.hovertemplate
