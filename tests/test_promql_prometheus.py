"""Differential test: the same samples in a real Prometheus (Debian's 2.42, backfilled with
`promtool tsdb create-blocks-from openmetrics`) and in our store; a table of PromQL queries
must give the same series and labels and values within 1e-9 relative, instant and range.

Skipped, saying why, when `prometheus`/`promtool` are not installed (apt-get install
prometheus). The queries our evaluator refuses are checked to be refused as bad_data.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from monitoring_core.ingest.points import store_points
from monitoring_core.partitions import ensure_partitions
from monitoring_core.prometheus import http_api
from monitoring_core.prometheus.promql.model import QueryError
from tests import promql_data

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="Prometheus not installed: apt-get install prometheus (provides prometheus, promtool)",
)
REL = 1e-9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def data(test_instant: datetime) -> list[promql_data.Sample]:
    return promql_data.samples(test_instant)


@pytest.fixture(scope="module")
def prometheus(
    data: list[promql_data.Sample], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus holding `data`, on a free port, stopped after the module."""
    root = tmp_path_factory.mktemp("prometheus")
    (root / "data.om").write_text(promql_data.openmetrics(data))
    tsdb = root / "tsdb"
    subprocess.run(
        [
            str(PROMTOOL),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(root / "data.om"),
            str(tsdb),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    port = _free_port()
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, root)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((root / "prometheus.log").read_text()[-2000:])
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Prometheus did not become ready within 60 s")


@pytest.fixture(scope="module")
def ours(session_engine: Engine, data: list[promql_data.Sample]) -> Engine:
    """Our store holding `data` (the module's tests read it; none of them truncates it)."""
    start, end = promql_data.span(data)
    with session_engine.begin() as conn:
        ensure_partitions(conn, start=start, end=end, tables=("metric_points",))
        conn.exec_driver_sql("TRUNCATE metric_series, metric_points, metric_catalog CASCADE")
        store_points(conn, promql_data.as_points(data))
    return session_engine


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= REL * max(abs(x), abs(y)) or abs(x - y) <= 1e-12


def _same(theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    assert theirs["resultType"] == mine["resultType"]
    kind = theirs["resultType"]
    if kind in ("scalar", "string"):
        assert theirs["result"][0] == pytest.approx(mine["result"][0])
        assert _close(theirs["result"][1], mine["result"][1]), (theirs, mine)
        return
    field = "value" if kind == "vector" else "values"
    a = {_key(item["metric"]): item[field] for item in theirs["result"]}
    b = {_key(item["metric"]): item[field] for item in mine["result"]}
    assert sorted(a) == sorted(b), (
        f"series differ: only Prometheus {set(a) - set(b)}, only ours {set(b) - set(a)}"
    )
    for key, expected in a.items():
        got = b[key]
        points_a = [expected] if kind == "vector" else expected
        points_b = [got] if kind == "vector" else got
        assert [p[0] for p in points_a] == pytest.approx([p[0] for p in points_b]), key
        bad = [(p, q) for p, q in zip(points_a, points_b, strict=True) if not _close(p[1], q[1])]
        assert not bad, f"{key}: {bad[:3]}"


def _order(theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    assert [_key(i["metric"]) for i in theirs["result"]] == [
        _key(i["metric"]) for i in mine["result"]
    ]


def _prom(url: str, path: str, **params: Any) -> dict[str, Any]:
    reply = httpx.get(f"{url}{path}", params=params, timeout=60).json()
    assert reply["status"] == "success", reply
    return reply["data"]


def _at(end: datetime, minutes: float) -> float:
    return round((end - timedelta(minutes=minutes)).timestamp(), 3)


# Every feature of #15 part 4; `{T}` is an instant 30 minutes before the data's end.
QUERIES = [
    "http_requests_total",
    'http_requests_total{job="api"}',
    'http_requests_total{job!="api"}',
    'http_requests_total{code=~"2.."}',
    'http_requests_total{code!~"2..",job=~"api|web"}',
    '{__name__=~"http_req.*",instance="a"}',
    "http_requests_total offset 10m",
    "http_requests_total @ {T}",
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[10m])",
    "delta(temperature[10m])",
    "idelta(temperature[5m])",
    "resets(http_requests_total[30m])",
    "changes(temperature[10m])",
    "avg_over_time(temperature[10m])",
    "sum_over_time(temperature[5m])",
    "min_over_time(temperature[10m])",
    "max_over_time(temperature[10m])",
    "count_over_time(temperature[10m])",
    "last_over_time(temperature[10m])",
    "stddev_over_time(temperature[10m])",
    "stdvar_over_time(temperature[10m])",
    "quantile_over_time(0.9, temperature[10m])",
    "quantile_over_time(0.25, temperature[10m])",
    "present_over_time(queue_depth[5m])",
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "avg by (code) (rate(http_requests_total[5m]))",
    "min by (floor) (temperature)",
    "max without (room) (temperature)",
    "count by (job) (http_requests_total)",
    "topk(2, temperature)",
    "bottomk(1, rate(http_requests_total[5m]))",
    "topk by (job) (1, rate(http_requests_total[5m]))",
    "quantile(0.5, temperature)",
    "quantile by (job) (0.9, rate(http_requests_total[5m]))",
    "stddev(temperature)",
    "stdvar by (floor) (temperature)",
    'count_values("value", round(temperature))',
    "group by (job) (http_requests_total)",
    "temperature * 2 + 1",
    "temperature % 3",
    "2 ^ (temperature / 10)",
    "temperature > 20",
    "temperature > bool 20",
    "20 < temperature",
    "temperature == bool temperature",
    "1 + 2 * 3",
    "rate(http_requests_total[5m]) / on(job, instance) group_left sum by (job, instance) (rate(http_requests_total[5m]))",
    'sum by (job) (rate(http_requests_total{code="500"}[5m])) / sum by (job) (rate(http_requests_total[5m]))',
    "http_requests_total * on(job) group_left(version) build_info",
    "build_info * on(job) group_right(version) http_requests_total",
    "rate(http_requests_total[5m]) - ignoring(code) group_left sum without (code) (rate(http_requests_total[5m]))",
    'http_requests_total and http_requests_total{code="200"}',
    "http_requests_total or temperature",
    'http_requests_total unless http_requests_total{job="api"}',
    'http_requests_total and on(job) build_info{version="1"}',
    'temperature unless on(floor) temperature{room="hall"}',
    "histogram_quantile(0.9, rate(rq_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(rq_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (job, le) (rate(rq_seconds_bucket[10m])))",
    "rate(rq_seconds_sum[5m]) / rate(rq_seconds_count[5m])",
    'absent(nonexistent_metric{job="x"})',
    "absent(temperature)",
    "absent_over_time(nonexistent[5m])",
    'label_replace(temperature, "where", "$1-x", "room", "(.*)")',
    'label_replace(temperature, "floor", "f${1}", "floor", "([0-9])")',
    'label_join(temperature, "both", "/", "room", "floor")',
    "clamp(temperature, 19.5, 20.5)",
    "clamp_min(temperature, 20)",
    "clamp_max(temperature, 20)",
    "abs(temperature - 20)",
    "round(temperature)",
    "round(temperature, 0.25)",
    "ceil(temperature) - floor(temperature)",
    "sqrt(temperature) + ln(temperature) + exp(temperature / 100)",
    "time()",
    "vector(1)",
    "vector(time())",
    "scalar(sum(temperature))",
    "scalar(temperature)",
    "timestamp(temperature)",
    "-temperature",
    "max_over_time(rate(http_requests_total[1m])[10m:1m])",
    "avg_over_time(sum by (job) (rate(http_requests_total[2m]))[15m:30s])",
    "rate(http_requests_total[5m] offset 5m)",
    "rate(http_requests_total[5m] @ {T})",
    "queue_depth",
    "sum(temperature) + scalar(count(temperature))",
    "hour(timestamp(temperature)) + minute(timestamp(temperature))",
    "deriv(temperature[10m])",
    "deriv(http_requests_total[5m])",
    "deriv(queue_depth[3m] offset 2m)",
    "predict_linear(temperature[10m], 600)",
    "predict_linear(http_requests_total[15m], 3600)",
    "predict_linear(temperature[5m] offset 5m, 120)",
    "holt_winters(temperature[10m], 0.5, 0.5)",
    "holt_winters(http_requests_total[5m], 0.1, 0.9)",
    "holt_winters(rate(http_requests_total[1m])[10m:1m], 0.3, 0.6)",
    "deriv(sum(rate(http_requests_total[2m]))[10m:])",
    "resets(rate(http_requests_total[1m])[15m:1m])",
    "changes(queue_depth[15m])",
    "sgn(temperature - 20)",
    "log2(temperature) - log10(temperature)",
    "pi() * vector(2)",
    "histogram_count(rate(rq_seconds_bucket[5m]))",
    'histogram_fraction(0, 0.5, rq_seconds_bucket{le="0.5"})',
    'count_values by (job) ("code", http_requests_total > 0)',
    "last_over_time(queue_depth[10m])",
    "present_over_time(queue_depth[10m])",
    'absent_over_time(queue_depth{queue="b"}[5m])',
    "stddev by (job) (rate(http_requests_total[5m]))",
    "stdvar without (code) (http_requests_total)",
    "group without (instance) (http_requests_total)",
]
SORTED = ["sort(temperature)", "sort_desc(rate(http_requests_total[5m]))"]
# Newer than Prometheus 2.42 (the parser follows 3.x): refused by name, never guessed.
REFUSED = [
    "mad_over_time(temperature[10m])",
    'sort_by_label(temperature, "room")',
    "limitk(2, temperature)",
]


def _query(template: str, end: datetime) -> str:
    return template.replace("{T}", str(_at(end, 30)))


@pytest.mark.parametrize("template", QUERIES)
def test_instant_queries_match_prometheus(
    template: str, prometheus: str, ours: Engine, data: list[promql_data.Sample]
) -> None:
    _start, end = promql_data.span(data)
    query = _query(template, end)
    for minutes in (0.5, 12.25):
        at = _at(end, minutes)
        theirs = _prom(prometheus, "/api/v1/query", query=query, time=at)
        with ours.connect() as conn:
            mine = http_api.instant_query(conn, query, round(at * 1000))
        _same(theirs, mine)


@pytest.mark.parametrize("template", [q for q in QUERIES if q != "1 + 2 * 3"])
def test_range_queries_match_prometheus(
    template: str, prometheus: str, ours: Engine, data: list[promql_data.Sample]
) -> None:
    _start, end = promql_data.span(data)
    query = _query(template, end)
    start, stop = _at(end, 50), _at(end, 0.2)
    for step in (60, 37):
        theirs = _prom(
            prometheus, "/api/v1/query_range", query=query, start=start, end=stop, step=step
        )
        with ours.connect() as conn:
            mine = http_api.range_query(
                conn, query, round(start * 1000), round(stop * 1000), step * 1000
            )
        _same(theirs, mine)


def test_a_series_that_stops_has_a_value_until_its_last_sample_plus_the_lookback(
    prometheus: str, ours: Engine, data: list[promql_data.Sample]
) -> None:
    """queue_depth{queue="b"} stops 20 minutes before the end: present for 5 more minutes."""
    end = promql_data.span(data)[1]
    last = max(s.t_ms for s in data if s.name == "queue_depth" and ("queue", "b") in s.labels)
    counts = []
    for at_ms in (last - 1, last + 60_000, last + 299_999, last + 300_000, last + 300_001):
        theirs = _prom(prometheus, "/api/v1/query", query="queue_depth", time=at_ms / 1000)
        with ours.connect() as conn:
            mine = http_api.instant_query(conn, "queue_depth", at_ms)
        _same(theirs, mine)
        counts.append(len(mine["result"]))
    assert counts == [2, 2, 2, 2, 1] and last < end.timestamp() * 1000


@pytest.mark.parametrize("query", SORTED)
def test_sorted_instant_queries_keep_prometheus_order(
    query: str, prometheus: str, ours: Engine, data: list[promql_data.Sample]
) -> None:
    at = _at(promql_data.span(data)[1], 3)
    theirs = _prom(prometheus, "/api/v1/query", query=query, time=at)
    with ours.connect() as conn:
        mine = http_api.instant_query(conn, query, round(at * 1000))
    _same(theirs, mine)
    _order(theirs, mine)


@pytest.mark.parametrize("query", REFUSED)
def test_what_we_cannot_answer_is_refused_by_name(query: str, ours: Engine) -> None:
    with (
        ours.connect() as conn,
        pytest.raises(QueryError, match="not supported|unknown function") as caught,
    ):
        http_api.instant_query(conn, query, 0)
    assert caught.value.error_type == "bad_data"
    assert query.split("(", 1)[0] in str(caught.value)


def test_series_labels_and_values_match_prometheus(
    prometheus: str, ours: Engine, data: list[promql_data.Sample]
) -> None:
    start, end = (t.timestamp() for t in promql_data.span(data))
    matches = ['{__name__=~"temperature|queue_depth"}', 'http_requests_total{code="500"}']
    theirs = _prom(prometheus, "/api/v1/series", **{"match[]": matches, "start": start, "end": end})
    with ours.connect() as conn:
        mine = http_api.series(conn, matches, round(start * 1000), round(end * 1000))
        names = http_api.label_names(conn, [], None, None)
        jobs = http_api.label_values(conn, "job", [], None, None)
    assert sorted(map(_key, theirs)) == sorted(map(_key, mine))
    assert names == _prom(prometheus, "/api/v1/labels")
    assert jobs == _prom(prometheus, "/api/v1/label/job/values")


# ---------------------------------------------------------------- scrape → remote write
def test_prometheus_scrapes_and_remote_writes_the_same_samples_here(
    api_server: str, ingest_key: str, engine: Engine, tmp_path: Path
) -> None:
    """A real Prometheus scrapes a prometheus_client target every second and remote-writes
    to our API (basic auth, the ingest key as password): what we hold is what it holds."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    registry = CollectorRegistry()
    done = Counter("demo_jobs", "Jobs done", ["queue"], registry=registry)
    done.labels("mail").inc(7)
    Histogram("demo_seconds", "Job time", registry=registry, buckets=(0.5, 2)).observe(1)
    target_port = _free_port()
    server, thread = start_http_server(target_port, addr="127.0.0.1", registry=registry)
    api_port = api_server.rsplit(":", 1)[1]
    (tmp_path / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
remote_write:
  - url: http://127.0.0.1:{api_port}/api/v1/write
    basic_auth: {{username: prometheus, password: "{ingest_key}"}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
    metadata_config: {{send_interval: 1s}}
"""
    )
    port = _free_port()
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, tmp_path)
        mine = _wait_for_samples(engine, "demo_jobs_total", 5)
        theirs = _prom(url, "/api/v1/query", query="demo_jobs_total[10m]")["result"]
        # The series leaves the target: Prometheus writes a staleness marker and sends it on;
        # from that instant both answer nothing (not the last value for 5 minutes).
        done.remove("mail")
        marker = _wait_for_marker(engine, "demo_jobs_total")
        for moment in (marker - 1, marker, marker + 500):
            query = "demo_jobs_total"
            expected = _prom(url, "/api/v1/query", query=query, time=moment / 1000)
            with engine.connect() as conn:
                _same(expected, http_api.instant_query(conn, query, moment))
            assert len(expected["result"]) == (1 if moment < marker else 0)
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()
    (series,) = theirs
    labels = {"job": "app", "instance": f"127.0.0.1:{target_port}", "queue": "mail"}
    assert series["metric"] == {"__name__": "demo_jobs_total", **labels}
    scraped = {round(float(t) * 1000): float(v) for t, v in series["values"]}
    assert set(mine[tuple(sorted(labels.items()))]) <= set(scraped.items())
    with engine.connect() as conn:
        types = dict(conn.exec_driver_sql("SELECT name, metric_type FROM metric_catalog").all())
        buckets = conn.exec_driver_sql(
            "SELECT count(*) FROM metric_series WHERE name = 'demo_seconds_bucket'"
        ).scalar()
    assert types.get("demo_jobs_total") == "counter" or types.get("demo_jobs") == "counter"
    assert types.get("demo_seconds") == "histogram" and buckets == 3


def _wait_for_marker(engine: Engine, name: str) -> int:
    """The ms instant of the first staleness marker of `name` that arrived (within 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT min(m.time) FROM metric_stale_markers m "
                "JOIN metric_series s ON s.id = m.series_id WHERE s.name = %(n)s",
                {"n": name},
            ).scalar()
        if found is not None:
            return round(found.timestamp() * 1000)
        time.sleep(0.5)
    raise AssertionError(f"no staleness marker of {name} arrived in 60 s")


def _wait_for_samples(
    engine: Engine, name: str, count: int
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """Poll until `count` samples of `name` arrived (Prometheus sends about every second)."""
    deadline = time.monotonic() + 60
    while True:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT s.dimensions, p.time, p.value FROM metric_points p "
                "JOIN metric_series s ON s.id = p.series_id WHERE s.name = %(n)s ORDER BY p.time",
                {"n": name},
            ).all()
        if len(rows) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rows) >= count, f"only {len(rows)} samples of {name} arrived in 60 s"
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for dims, moment, value in rows:
        key = tuple(sorted(dims.items()))
        out.setdefault(key, []).append((round(moment.timestamp() * 1000), value))
    return out
