"""The API in a subprocess for the HTTP benchmarks (ingest, errors, Pushgateway)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_api(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until /healthz answers 200; RuntimeError if the process exits or 60 s pass."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the API exited during startup")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not answer /healthz within 60 s")


def start_api(url: str, workers: int = 1) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn with `workers` processes on a free port, on the database at `url`, ready."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "uvicorn", "monitoring_core.api.server:app_factory", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    api = subprocess.Popen(cmd, env=env, cwd=ROOT)
    wait_for_api(port, api)
    return api, port
