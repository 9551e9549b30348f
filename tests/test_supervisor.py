"""`make run` end to end: the supervisor starts the API, the worker and the UI, and stops them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from monitoring_core.schema import metric_points, metric_series, worker_heartbeats

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 in time")
        time.sleep(0.3)


def test_it_runs_api_worker_and_ui_together_and_stops_them(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    api_port, ui_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MONITORING_DATA_DIR": str(tmp_path),
        "MONITORING_API_PORT": str(api_port),
        "MONITORING_UI_PORT": str(ui_port),
        "DEMO": "0",
    }
    out = (tmp_path / "out.txt").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.supervisor"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        _wait_for(f"http://127.0.0.1:{api_port}/healthz", deadline)
        assert _wait_for(f"http://127.0.0.1:{ui_port}/_stcore/health", deadline).text == "ok"
        credentials = (tmp_path / "first-run-credentials.txt").read_text()
        assert oct((tmp_path / "first-run-credentials.txt").stat().st_mode & 0o777) == "0o600"
        key = next(
            line.split(": ")[1]
            for line in credentials.splitlines()
            if line.startswith("Ingest key")
        )
        reply = httpx.post(
            f"http://127.0.0.1:{api_port}/api/monitoring/metrics",
            headers={"Authorization": f"Bearer {key}"},
            json={"metric_name": "supervisor_smoke", "metric_value": 1},
        )
        assert reply.status_code == 202, reply.text
        read_key = next(
            line.split(": ")[1].strip()
            for line in credentials.splitlines()
            if line.startswith("Read key")
        )
        overview = f"http://127.0.0.1:{api_port}/api/monitoring/dashboard/overview?timeRange=1h"
        for key_given, status in ((read_key, 200), (key, 403)):  # the ingest key reads nothing
            answer = httpx.get(overview, headers={"Authorization": f"Bearer {key_given}"})
            assert answer.status_code == status, answer.text
        with engine.connect() as conn:
            # Only the smoke point: the worker's collectors write system/database points too.
            smoke = (
                select(func.count())
                .select_from(
                    metric_points.join(
                        metric_series, metric_series.c.id == metric_points.c.series_id
                    )
                )
                .where(metric_series.c.name == "supervisor_smoke")
            )
            assert conn.execute(smoke).scalar_one() == 1
        while True:  # the worker is alive: it writes its heartbeat
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(worker_heartbeats)).scalar_one():
                    break
            assert time.monotonic() < deadline, "the worker never wrote a heartbeat"
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        out.seek(0)
        output = out.read()
    assert code == 0, output
    assert "admin /" in output  # first-run login printed
    for port in (api_port, ui_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after stop"
