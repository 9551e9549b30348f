"""`python -m monitoring_core api` with MONITORING_OTLP_PORT also listens there (OTLP's 4318)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_api_also_answers_on_the_otlp_port(
    engine: Engine, database_url: str, ingest_key: str
) -> None:
    api_port, otlp_port = _free_port(), _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "MONITORING_OTLP_PORT": str(otlp_port)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitoring_core",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 60
        answers: dict[int, int] = {}
        while time.monotonic() < deadline and len(answers) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            for port in (api_port, otlp_port):
                try:
                    response = httpx.post(
                        f"http://127.0.0.1:{port}/v1/logs", content=b"{}", headers=headers
                    )
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                answers[port] = response.status_code
        assert answers == {api_port: 200, otlp_port: 200}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
