"""The Prometheus HTTP API on the real server: envelope, GET and form POST, errors, scopes,
and a remote-write → query round trip (what Grafana's Prometheus data source does)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import cramjam
import httpx
import pytest
from sqlalchemy import Engine

from monitoring_core.accounts import create_api_key
from monitoring_core.enums import ApiScope
from monitoring_core.prometheus.prompb import WriteRequest


@pytest.fixture
def read_key(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_api_key(conn, name="grafana", scope=ApiScope.READ)


def _write(url: str, key: str, now: datetime) -> None:
    request = WriteRequest()
    request.metadata.add(type=1, metric_family_name="jobs_done_total", help="Jobs done")
    for job, per_second in (("mail", 2.0), ("sms", 0.5)):
        series = request.timeseries.add()
        series.labels.add(name="__name__", value="jobs_done_total")
        series.labels.add(name="job", value=job)
        for i in range(41):  # 10 minutes every 15 s
            moment = now - timedelta(seconds=600 - 15 * i)
            series.samples.add(value=per_second * 15 * i, timestamp=int(moment.timestamp() * 1000))
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "Authorization": f"Bearer {key}",
    }
    assert httpx.post(f"{url}/api/v1/write", content=body, headers=headers).status_code == 204


def _get(url: str, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"Authorization": f"Bearer {key}"})


def test_grafana_style_queries_after_remote_write(
    api_server: str, ingest_key: str, read_key: str, real_now: datetime
) -> None:
    _write(api_server, ingest_key, real_now)
    at = real_now.timestamp()
    reply = _get(
        api_server,
        read_key,
        "/api/v1/query",
        query="sum by (job) (rate(jobs_done_total[5m]))",
        time=at,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    rates = {item["metric"]["job"]: float(item["value"][1]) for item in body["data"]["result"]}
    assert rates == pytest.approx({"mail": 2.0, "sms": 0.5})
    form = {"query": 'jobs_done_total{job="sms"}', "start": at - 300, "end": at, "step": "60s"}
    posted = httpx.post(
        f"{api_server}/api/v1/query_range", data=form, headers={"X-API-Key": read_key}
    ).json()
    (series,) = posted["data"]["result"]
    assert series["metric"] == {"__name__": "jobs_done_total", "job": "sms"}
    assert len(series["values"]) == 6 and all(isinstance(v[1], str) for v in series["values"])
    assert _get(api_server, read_key, "/api/v1/labels").json()["data"] == ["__name__", "job"]
    values = _get(api_server, read_key, "/api/v1/label/job/values").json()["data"]
    assert values == ["mail", "sms"]
    found = _get(
        api_server, read_key, "/api/v1/series", **{"match[]": 'jobs_done_total{job=~"m.*"}'}
    )
    assert found.json()["data"] == [{"__name__": "jobs_done_total", "job": "mail"}]
    meta = _get(api_server, read_key, "/api/v1/metadata").json()["data"]
    assert meta == {"jobs_done_total": [{"type": "counter", "help": "Jobs done", "unit": ""}]}
    info = _get(api_server, read_key, "/api/v1/status/buildinfo").json()["data"]
    assert info["version"].startswith("2.")


@pytest.mark.parametrize(
    ("path", "params", "status", "error_type", "says"),
    [
        ("/api/v1/query", {"query": "sum("}, 400, "bad_data", "parse error"),
        ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data", "time"),
        ("/api/v1/query", {"query": "mad_over_time(up[5m])"}, 400, "bad_data", "mad_over_time"),
        (
            "/api/v1/query_range",
            {"query": "up", "start": 10, "end": 5, "step": 1},
            400,
            "bad_data",
            "end",
        ),
        (
            "/api/v1/query_range",
            {"query": "up", "start": 0, "end": 1e6, "step": 1},
            400,
            "bad_data",
            "11,000",
        ),
        (
            "/api/v1/query_range",
            {"query": "up[5m]", "start": 0, "end": 60, "step": 15},
            422,
            "execution",
            "range vector",
        ),
        (
            "/api/v1/query_range",
            {"query": "up", "start": 0, "end": 60, "step": "x"},
            400,
            "bad_data",
            "step",
        ),
        ("/api/v1/series", {}, 400, "bad_data", "match[]"),
    ],
)
def test_errors_come_in_prometheus_envelope(
    api_server: str,
    read_key: str,
    path: str,
    params: dict[str, Any],
    status: int,
    error_type: str,
    says: str,
) -> None:
    reply = _get(api_server, read_key, path, **params)
    assert reply.status_code == status
    body = reply.json()
    assert body["status"] == "error" and body["errorType"] == error_type
    assert says in body["error"]


def test_queries_need_a_read_key(api_server: str, ingest_key: str) -> None:
    assert httpx.get(f"{api_server}/api/v1/query", params={"query": "1"}).status_code == 401
    assert _get(api_server, ingest_key, "/api/v1/query", query="1").status_code == 403


def test_scalars_and_strings(api_server: str, read_key: str) -> None:
    scalar = _get(api_server, read_key, "/api/v1/query", query="1 + 2 * 3", time=100).json()
    assert scalar["data"] == {"resultType": "scalar", "result": [100.0, "7"]}
    text = _get(api_server, read_key, "/api/v1/query", query='"hello"', time=100).json()
    assert text["data"] == {"resultType": "string", "result": [100.0, "hello"]}
