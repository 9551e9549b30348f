"""OTLP value mapping's fast paths (otlp.values, otlp.logs): the same results as the general
path for empty strings, unset values, all-zero ids and times (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from monitoring_core.otlp.logs import _body
from monitoring_core.otlp.values import attributes, hex_id, time_of


def test_attributes_fast_path_keeps_empty_unset_and_other_kinds_apart() -> None:
    pairs = [
        KeyValue(key="s", value=AnyValue(string_value="checkout")),
        KeyValue(key="empty", value=AnyValue(string_value="")),
        KeyValue(key="unset", value=AnyValue()),
        KeyValue(key="i", value=AnyValue(int_value=0)),
        KeyValue(key="b", value=AnyValue(bool_value=False)),
        KeyValue(key="nul", value=AnyValue(string_value="a\x00b")),
        KeyValue(
            key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))
        ),
    ]
    assert attributes(pairs) == {
        "s": "checkout",
        "empty": "",
        "unset": None,
        "i": 0,
        "b": False,
        "nul": "a\ufffdb",
        "list": [1],
    }


def test_log_body_fast_path() -> None:
    assert _body(AnyValue(string_value="card declined")) == "card declined"
    assert _body(AnyValue(string_value="")) == ""
    assert _body(AnyValue()) == ""
    assert _body(AnyValue(string_value="x" * 40_000)).endswith("…")
    assert _body(AnyValue(int_value=42)) == "42"


def test_ids_and_times() -> None:
    assert hex_id(bytes(16), 16) is None and hex_id(bytes(8), 8) is None
    assert hex_id(b"\x00" * 15 + b"\x01", 16) == "0" * 31 + "1"
    assert hex_id(b"\x01" * 8, 16) is None  # wrong size
    moment = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
    nanos = int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000
    assert time_of(nanos + 999) == moment  # µs precision, truncated
    assert time_of(0) == datetime(1970, 1, 1, tzinfo=UTC)
