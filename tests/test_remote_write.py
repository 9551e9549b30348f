"""Remote write 1.0 into the real API: snappy + protobuf in, metric points out, spec answers."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import cramjam
import httpx
import pytest
from sqlalchemy import Engine, select, text

from monitoring_core.prometheus.prompb import WriteRequest
from monitoring_core.prometheus.remote_write import RemoteWriteError, decode
from monitoring_core.schema import metric_points, metric_series

STALE_NAN = 0x7FF0000000000002  # Prometheus' staleness marker (value.StaleNaN)


def _request(series: list[tuple[dict[str, str], list[tuple[float, datetime]]]]) -> Any:
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for number, moment in samples:
            ts.samples.add(value=number, timestamp=int(moment.timestamp() * 1000))
    return request


def _body(request: Any) -> bytes:
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _post(url: str, body: bytes, key: str, **headers: str) -> httpx.Response:
    sent = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "Authorization": f"Bearer {key}",
        **headers,
    }
    return httpx.post(f"{url}/api/v1/write", content=body, headers=sent, timeout=30)


def _stored(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    stmt = (
        select(metric_series.c.name, metric_series.c.dimensions, metric_points.c.value)
        .join(metric_points, metric_points.c.series_id == metric_series.c.id)
        .order_by(metric_points.c.time)
    )
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    with engine.connect() as conn:
        for name, dims, value in conn.execute(stmt):
            out.setdefault((name, tuple(sorted(dims.items()))), []).append(value)
    return out


def test_it_stores_samples_with_labels_as_dimensions(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    t0 = real_now - timedelta(minutes=2)
    request = _request(
        [
            (
                {"__name__": "http_requests_total", "job": "api", "code": "200", "empty": ""},
                [(10.0, t0), (15.0, t0 + timedelta(seconds=15))],
            ),
            ({"__name__": "rq_seconds_bucket", "job": "api", "le": "+Inf"}, [(3.0, t0)]),
            ({"__name__": "queue_depth", "job": "worker"}, [(7.5, t0)]),
        ]
    )
    request.metadata.add(type=2, metric_family_name="queue_depth", help="Jobs waiting", unit="")
    response = _post(api_server, _body(request), ingest_key)
    assert response.status_code == 204, response.text
    stored = _stored(engine)
    assert stored[("http_requests_total", (("code", "200"), ("job", "api")))] == [10.0, 15.0]
    assert stored[("rq_seconds_bucket", (("job", "api"), ("le", "+Inf")))] == [3.0]
    assert stored[("queue_depth", (("job", "worker"),))] == [7.5]
    with engine.connect() as conn:
        types: dict[str, str] = dict(
            conn.execute(text("SELECT name, metric_type FROM metric_catalog")).all()
        )
        times = conn.execute(select(metric_points.c.time).order_by(metric_points.c.time)).scalars()
        assert next(iter(times)) == t0.replace(microsecond=0)
    assert types == {
        "http_requests_total": "counter",
        "rq_seconds": "histogram",
        "queue_depth": "gauge",
    }


def test_it_takes_basic_auth_with_the_key_as_password(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    basic = base64.b64encode(f"prometheus:{ingest_key}".encode()).decode()
    body = _body(_request([({"__name__": "up", "job": "x"}, [(1.0, real_now)])]))
    assert _post(api_server, body, "", Authorization=f"Basic {basic}").status_code == 204
    assert _post(api_server, body, "wrong-key").status_code == 401


def test_it_keeps_staleness_markers_apart_and_refuses_invalid_samples_with_400(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    import struct

    stale = struct.unpack("<d", struct.pack("<Q", STALE_NAN))[0]
    request = _request(
        [
            (
                {"__name__": "ok_metric"},
                [(1.0, real_now), (stale, real_now + timedelta(seconds=1))],
            ),
            ({"job": "no-name"}, [(1.0, real_now)]),
            ({"__name__": "old_metric"}, [(2.0, real_now - timedelta(days=400))]),
            ({"__name__": "huge_metric"}, [(1e300, real_now)]),
        ]
    )
    response = _post(api_server, _body(request), ingest_key)
    assert response.status_code == 400
    assert "3 samples refused, 1 stored" in response.text
    assert "without __name__" in response.text and "old_metric" in response.text
    assert _stored(engine) == {("ok_metric", ()): [1.0]}
    with engine.connect() as conn:
        markers = conn.execute(text("SELECT time FROM metric_stale_markers")).scalars().all()
    assert markers == [real_now + timedelta(seconds=1)]


def _stale() -> float:
    import struct

    return float(struct.unpack("<d", struct.pack("<Q", STALE_NAN))[0])


def test_a_staleness_marker_ends_the_series_for_instant_queries(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    """As in Prometheus: no value at or after the marker (not the 5-minute lookback's last
    value) until a new sample; range functions skip the marker; a marker of an unknown series
    is dropped; a plain NaN is neither a point nor a marker."""
    from monitoring_core.prometheus import http_api

    t0 = real_now - timedelta(minutes=10)
    at = [t0 + timedelta(seconds=15 * i) for i in range(12)]
    first = _request([({"__name__": "up", "job": "a"}, [(1.0, t) for t in at[:4]])])
    assert _post(api_server, _body(first), ingest_key).status_code == 204
    then = _request(
        [
            ({"__name__": "up", "job": "a"}, [(_stale(), at[4]), (1.0, at[8])]),
            ({"__name__": "up", "job": "never_seen"}, [(_stale(), at[4])]),
            ({"__name__": "up", "job": "nan"}, [(float("nan"), at[4])]),
        ]
    )
    assert _post(api_server, _body(then), ingest_key).status_code == 204

    def value(query: str, moment: datetime) -> list[str]:
        with engine.connect() as conn:
            found = http_api.instant_query(conn, query, int(moment.timestamp() * 1000))
        return [item["value"][1] for item in found["result"]]

    assert value("up", at[3] + timedelta(seconds=5)) == ["1"]
    assert value("up", at[4]) == []  # at the marker itself
    assert value("up", at[6]) == []  # within the lookback of the last sample: still ended
    assert value("up", at[8]) == ["1"]  # a new sample revives it
    assert value("count_over_time(up[2m])", at[8]) == ["5"]  # at[0..3] and at[8], no marker
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM metric_stale_markers")).scalar()
    assert stored == 1


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({}, b"\x05not snappy", 400, "snappy"),
        ({}, bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), 400, "WriteRequest"),
        ({"Content-Type": "application/json"}, b"{}", 415, "x-protobuf"),
        ({"Content-Encoding": "gzip"}, b"", 415, "snappy"),
        ({"X-Prometheus-Remote-Write-Version": "2.0.0"}, b"", 415, "version"),
        (
            {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
            b"",
            415,
            "1.0",
        ),
    ],
)
def test_it_answers_unreadable_or_unsupported_bodies(
    api_server: str,
    ingest_key: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    says: str,
) -> None:
    response = _post(api_server, body, ingest_key, **headers)
    assert response.status_code == status
    assert says in response.text


def test_it_refuses_a_body_that_would_decompress_past_the_limit() -> None:
    bomb = bytes(cramjam.snappy.compress_raw(bytes(2_000_000)))
    with pytest.raises(OverflowError):
        decode(bomb, max_bytes=1_000_000)
    with pytest.raises(RemoteWriteError):
        decode(b"\xff\xff\xff\xff\xff\xff", max_bytes=1_000_000)


def test_it_refuses_native_histograms_by_name(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    request = _request([({"__name__": "h"}, [])])
    request.timeseries[0].histograms.append(b"\x08\x01")
    response = _post(api_server, _body(request), ingest_key)
    assert response.status_code == 400
    assert "native histograms" in response.text


def test_samples_spend_the_keys_point_rate(
    api_server: str, engine: Engine, real_now: datetime
) -> None:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        key = create_api_key(conn, name="rw-tight", scope=ApiScope.INGEST, points_per_minute=5)
    moments = [real_now - timedelta(seconds=s) for s in (1, 2, 3, 4)]
    four = _body(_request([({"__name__": "up", "job": "x"}, [(1.0, m) for m in moments])]))
    assert _post(api_server, four, key).status_code == 204
    refused = _post(api_server, four, key)  # 4 more samples, 1 left this minute
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert "5 points per minute" in refused.text
    assert sum(len(v) for v in _stored(engine).values()) == 4  # nothing of the refused one
