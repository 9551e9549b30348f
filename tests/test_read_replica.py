"""A real streaming replica, built on this machine from the embedded Postgres binaries.

A primary cluster of its own (not the shared test cluster), `pg_basebackup -R` for the
standby, reads through `ReadRouter`, then the standby paused (lag), stopped (fallback) and a
primary given as the "replica" (refused: not a standby).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from monitoring_core.config import load_settings
from monitoring_core.db import make_engine
from monitoring_core.replica import ReadRouter, read_router


@dataclass
class Pair:
    root: Path
    bin: Path
    user: str
    primary_uri: str
    replica_dir: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        return subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=60)

    def replica_uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.replica_dir}"

    def start_replica(self) -> None:
        out = self.run(
            str(self.bin / "pg_ctl"), "-D", str(self.replica_dir), "-w", "-l",
            str(self.root / "replica.log"), "-o",
            f"-c unix_socket_directories={self.replica_dir} -c listen_addresses=''", "start",
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr

    def stop_replica(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.replica_dir), "-m", "fast", "stop")


def _engine(uri: str) -> Engine:
    return make_engine(uri.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    root = Path(tempfile.mkdtemp(prefix="replica-test-"))
    root.chmod(0o755)  # the Postgres system user must reach it
    server: Any = pgserver.get_server(root / "primary", cleanup_mode=None)
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    if os.geteuid() == 0:
        shutil.chown(root, user=server.system_user)
    pair = Pair(root, bin_dir, server.system_user, server.get_uri(), root / "replica")
    backup = pair.run(
        str(bin_dir / "pg_basebackup"), "-h", str(root / "primary"), "-U", "postgres",
        "-D", str(pair.replica_dir), "-R", "-X", "stream",
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    for stale in pair.replica_dir.glob(".s.PGSQL.*"):  # the primary's socket lock, copied
        stale.unlink()
    pair.start_replica()
    with psycopg.connect(pair.primary_uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE bookings (id int PRIMARY KEY, couple text)")
    try:
        yield pair
    finally:
        pair.stop_replica()
        pair.run(str(bin_dir / "pg_ctl"), "-D", str(root / "primary"), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _wait_replayed(pair: Pair) -> None:
    """Poll (not sleep for history) until the standby has replayed the primary's WAL."""
    with psycopg.connect(pair.primary_uri, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
    deadline = time.monotonic() + 30
    with psycopg.connect(pair.replica_uri(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            query = "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()) <= 0"
            row = conn.execute(query, (target,)).fetchone()
            if row is not None and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not catch up in 30 s")


def test_reads_go_to_the_streaming_replica(pair: Pair) -> None:
    primary, replica = _engine(pair.primary_uri), _engine(pair.replica_uri())
    with primary.begin() as conn:
        conn.execute(text("INSERT INTO bookings VALUES (1, 'Ada & Grace')"))
    _wait_replayed(pair)
    router = ReadRouter(primary, replica, max_lag_s=30)
    status = router.status(refresh=True)
    assert status.usable and status.reason == "streaming" and status.lag_s == 0.0
    assert router.engine() is replica
    with router.connect() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
        assert conn.execute(text("SELECT couple FROM bookings WHERE id = 1")).scalar_one() == (
            "Ada & Grace"
        )


def test_a_replica_lagging_past_the_setting_is_bypassed(pair: Pair) -> None:
    primary, replica = _engine(pair.primary_uri), _engine(pair.replica_uri())
    with psycopg.connect(pair.replica_uri(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        with primary.begin() as conn:
            conn.execute(text("INSERT INTO bookings VALUES (2, 'Mo & Li')"))
        strict = ReadRouter(primary, replica, max_lag_s=0.0)
        status = strict.status(refresh=True)
        assert not status.usable and status.reason.startswith("lagging")
        assert status.lag_bytes is not None and status.lag_bytes > 0
        with strict.connect() as conn:  # served by the primary, which has the new row
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
            assert (
                conn.execute(text("SELECT count(*) FROM bookings WHERE id = 2")).scalar_one() == 1
            )
        lenient = ReadRouter(primary, replica, max_lag_s=3600)
        assert lenient.status(refresh=True).usable
    finally:
        with psycopg.connect(pair.replica_uri(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    _wait_replayed(pair)


def test_a_stopped_replica_falls_back_to_the_primary(pair: Pair) -> None:
    primary, replica = _engine(pair.primary_uri), _engine(pair.replica_uri())
    router = ReadRouter(primary, replica, max_lag_s=30)
    assert router.status(refresh=True).usable
    pair.stop_replica()
    try:
        replica.dispose()  # the pool's open connections died with the server
        with router.connect() as conn:  # status still says usable: the connect fails over
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
        status = router.status()
        assert not status.usable and "refused" in status.reason
        assert not router.status(refresh=True).usable  # and the next check agrees
    finally:
        pair.start_replica()
    _wait_replayed(pair)
    assert router.status(refresh=True).usable  # back once it answers again


def test_a_primary_named_as_replica_is_refused(pair: Pair) -> None:
    primary = _engine(pair.primary_uri)
    router = ReadRouter(primary, _engine(pair.primary_uri), max_lag_s=30)
    status = router.status(refresh=True)
    assert not status.usable and "not a standby" in status.reason
    assert router.engine() is primary


def test_no_read_url_means_the_primary(session_engine: Engine) -> None:
    router = read_router(load_settings({}), session_engine)
    assert router.replica is None and router.engine() is session_engine
    assert not router.status().configured


def test_the_health_page_says_when_the_replica_is_not_used(
    logged_in_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring_core.enums import Role

    monkeypatch.setenv("DATABASE_READ_URL", database_url)  # a primary: refused as a replica
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/health.py").run()
    assert not at.exception
    warnings_shown = " ".join(w.value for w in at.warning)
    assert "Read replica not used" in warnings_shown and "not a standby" in warnings_shown


def test_the_read_api_goes_through_the_router_and_survives_a_dead_replica(
    api_app: Any, api_server: str, admin_key: str, session_engine: Engine
) -> None:
    import httpx
    from sqlalchemy import create_engine

    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # refuses at once
    api_app.state.read = ReadRouter(session_engine, dead, max_lag_s=30)
    answer = httpx.get(
        f"{api_server}/api/monitoring/dashboard/overview",
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text  # served by the primary
    status = api_app.state.read.status()
    assert status.configured and not status.usable and "unreachable" in status.reason
