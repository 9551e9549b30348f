"""The worker process outlives a real restart of its Postgres server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitoring_core.db import embedded_url, make_engine
from monitoring_core.migrate import migrate
from tests.conftest import ROOT


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from pgserver._commands import pg_ctl

    if os.geteuid() == 0:
        # Postgres runs as the `pgserver` user and must traverse to its data directory. Any
        # pytest run that starts meanwhile (another session, a helper's run) resets
        # /tmp/pytest-of-root to 0o700, which made `pg_ctl stop` fail with "could not access
        # directory … Permission denied" (CI of 2026-12-03); restore the traversal rights first.
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
    pg_ctl(list(args), pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None)


def _heartbeat(url: str) -> object:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT max(last_seen) FROM worker_heartbeats")).scalar()
    except Exception:  # noqa: BLE001 - the server may be down or starting
        return None
    finally:
        engine.dispose()


def _wait_for_newer(url: str, than: object, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = _heartbeat(url)
        if seen is not None and (than is None or seen > than):  # type: ignore[operator]
            return seen
        time.sleep(0.5)
    raise AssertionError(f"no heartbeat newer than {than} within {timeout} s")


def test_it_keeps_working_across_a_database_restart(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    url = embedded_url(tmp_path, keep_running=True)
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC))
    engine.dispose()
    env = {**os.environ, "DATABASE_URL": url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobs.worker", "--only", "rollups"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        before = _wait_for_newer(url, None, 60)
        _pg_ctl(pgdata, "-w", "stop", "-m", "fast")
        time.sleep(3)  # the server is really down for a while: the worker must not exit
        assert worker.poll() is None, "the worker died while the database was down"
        socket_dir = make_url(url).query["host"]  # where pgserver put the socket
        _pg_ctl(
            pgdata,
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(pgdata / "log"),
            "start",
        )
        _wait_for_newer(url, before, 60)
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        _pg_ctl(pgdata, "-w", "stop", "-m", "fast")
