"""The exposition parser and the Pushgateway grouping key: pure, table-driven."""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

from monitoring_core.prometheus import (
    ExpositionError,
    GroupingKeyError,
    parse_exposition,
    parse_grouping_key,
    samples_to_points,
)

NOW = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)


def _flat(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in parse_exposition(text).samples]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("up 1", [("up", {}, 1.0)]),
        ("up 1\n", [("up", {}, 1.0)]),
        ("  up   2.5   \n\n", [("up", {}, 2.5)]),
        ('x{a="1",b="two"} 3', [("x", {"a": "1", "b": "two"}, 3.0)]),
        ('x{a="1",} 3', [("x", {"a": "1"}, 3.0)]),
        ('x{ a = "1" , b="2" } 3', [("x", {"a": "1", "b": "2"}, 3.0)]),
        ("x{} 3", [("x", {}, 3.0)]),
        (r'x{p="a\"b\\c\nd"} 1', [("x", {"p": 'a"b\\c\nd'}, 1.0)]),
        ('x{p="}{,="} 1', [("x", {"p": "}{,="}, 1.0)]),
        ("x 1e3", [("x", {}, 1000.0)]),
        ("x -0.5 1700000000000", [("x", {}, -0.5)]),
        ("ns:sub_name 1", [("ns:sub_name", {}, 1.0)]),
        ("# a comment\n# HELP x Some help\n# TYPE x gauge\nx 1", [("x", {}, 1.0)]),
        ("# HELP x\nx 1", [("x", {}, 1.0)]),
        ("x NaN\ny +Inf\nz -Inf\nw 4", [("w", {}, 4.0)]),
    ],
)
def test_it_parses_samples(text: str, expected: list[tuple[str, dict[str, str], float]]) -> None:
    assert _flat(text) == expected


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("up", 1, "cannot parse sample"),
        ("up 1\n\nup one", 3, "not a number"),
        ('up{a="1"', 1, "cannot parse sample"),
        ("up{a=1} 1", 1, "malformed label set"),
        ('up{a="1" b="2"} 1', 1, "malformed label set"),
        ('up{1a="1"} 1', 1, "malformed label set"),
        ('up{a="1",a="2"} 1', 1, "duplicate label"),
        ("up 1 12.5", 1, "timestamp"),
        ("up 1 2 3", 1, "cannot parse sample"),
        ("# TYPE x gauge\n# TYPE x counter\nx 1", 2, "second TYPE"),
        ("# TYPE x wibble\nx 1", 1, "unknown metric type"),
        ("x 1\n# TYPE x gauge", 2, "after its samples"),
        ("# HELP x a\n# HELP x b", 2, "second HELP"),
        ("# TYPE x", 1, "unknown metric type"),
        ("# TYPE", 1, "malformed TYPE"),
        ("# TYPE h histogram\nh_bucket 1", 2, "no 'le' label"),
        ("# TYPE s summary\ns 1", 2, "no 'quantile' label"),
        ("9bad 1", 1, "cannot parse sample"),
        (b"ok 1\n\xff 1", 2, "UTF-8"),
    ],
)
def test_it_names_the_line_of_a_malformed_exposition(
    text: str | bytes, line: int, fragment: str
) -> None:
    with pytest.raises(ExpositionError) as info:
        parse_exposition(text)
    assert info.value.line == line
    assert fragment in str(info.value)


def test_it_reads_what_prometheus_client_writes() -> None:
    registry = CollectorRegistry()
    Counter("req", "Requests", ["path"], registry=registry).labels('/a"b\\').inc(3)
    Histogram("lat", "Latency", registry=registry, buckets=(0.1, 1)).observe(0.5)
    Summary("dur", "Duration", registry=registry).observe(2)
    Gauge("temp", "Temperature", registry=registry).set(21.5)
    parsed = parse_exposition(generate_latest(registry))
    assert parsed.types["req_total"] == "counter"
    assert parsed.types["lat"] == "histogram"
    assert parsed.types["dur"] == "summary"
    names = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in parsed.samples}
    assert names == {
        ("req_total", (("path", '/a"b\\'),)): 3.0,
        ("lat_bucket", (("le", "0.1"),)): 0.0,
        ("lat_bucket", (("le", "1.0"),)): 1.0,
        ("lat_bucket", (("le", "+Inf"),)): 1.0,
        ("lat_count", ()): 1.0,
        ("lat_sum", ()): 0.5,
        ("dur_count", ()): 1.0,
        ("dur_sum", ()): 2.0,
        ("temp", ()): 21.5,
    }  # the `_created` companions are dropped


def test_it_keeps_summary_quantiles_and_counts_non_finite_values() -> None:
    text = (
        "# TYPE rpc summary\n"
        'rpc{quantile="0.5"} 4\nrpc{quantile="0.99"} NaN\nrpc_sum 10\nrpc_count 3\n'
    )
    parsed = parse_exposition(text)
    assert [(s.name, s.labels) for s in parsed.samples] == [
        ("rpc", {"quantile": "0.5"}),
        ("rpc_sum", {}),
        ("rpc_count", {}),
    ]
    assert parsed.skipped_non_finite == 1


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (["job", "nightly"], {"job": "nightly"}),
        (["job", "a", "instance", "h1"], {"job": "a", "instance": "h1"}),
        (
            ["job", "a", "path@base64", base64.urlsafe_b64encode(b"/var/tmp x").decode()],
            {"job": "a", "path": "/var/tmp x"},
        ),
        (["job", "a", "empty@base64", "="], {"job": "a", "empty": ""}),
        (["job@base64", "YS9i"], {"job": "a/b"}),
        (["job", "a", "x@base64", "YQ"], {"job": "a", "x": "a"}),  # padding optional
    ],
)
def test_it_reads_grouping_keys(segments: list[str], expected: dict[str, str]) -> None:
    assert parse_grouping_key(segments) == expected


@pytest.mark.parametrize(
    "segments",
    [
        [],
        ["job"],
        ["job", "a", "instance"],
        ["instance", "h", "job", "a"],
        ["job", "a", "job", "b"],
        ["job", "a", "bad-name", "v"],
        ["job", "a", "x@base64", "!!!"],
        ["job@base64", "="],
    ],
)
def test_it_refuses_bad_grouping_keys(segments: list[str]) -> None:
    with pytest.raises(GroupingKeyError):
        parse_grouping_key(segments)


def test_it_turns_samples_into_points_with_the_grouping_key() -> None:
    parsed = parse_exposition('jobs_done{queue="mail",job="other"} 7\nlast_run 5')
    points = samples_to_points(parsed, {"job": "batch", "instance": "h1"}, now=NOW)
    assert [(p.name, dict(p.dimensions), p.value) for p in points] == [
        ("jobs_done", {"queue": "mail", "job": "batch", "instance": "h1"}, 7.0),
        ("last_run", {"job": "batch", "instance": "h1"}, 5.0),
        ("push_time_seconds", {"job": "batch", "instance": "h1"}, NOW.timestamp()),
    ]
    assert all(p.time == NOW and p.source_system == "pushgateway" for p in points)


def test_it_refuses_pushed_timestamps_with_the_line() -> None:
    parsed = parse_exposition("a 1\nb 2 1700000000000")
    with pytest.raises(ExpositionError) as info:
        samples_to_points(parsed, {"job": "j"}, now=NOW)
    assert info.value.line == 2


def test_it_parses_a_large_body() -> None:
    text = "".join(f'm{{i="{i}",k="v"}} {i}.5\n' for i in range(20_000))
    parsed = parse_exposition(text)
    assert len(parsed.samples) == 20_000
    assert not math.isnan(parsed.samples[-1].value)
