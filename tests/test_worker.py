"""The worker: CLI flags as a real process, the safe wrapper, leader election, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, text

from jobs.locks import SingletonLocks
from jobs.registry import Job
from jobs.worker import Worker, backoff_seconds
from tests.conftest import ROOT


def _env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}


def _worker(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.worker", *args],
        cwd=ROOT, env=_env(database_url), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _runs(engine: Engine) -> list[tuple[str, bool, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job, ok, error FROM job_runs ORDER BY id")).all()
    return [tuple(r) for r in rows]


def _wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll until a real process reached a state (readiness, not passing time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_it_lists_the_jobs_without_a_database() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    out = subprocess.run(
        [sys.executable, "-m", "jobs.worker", "--list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0
    assert {line.split()[0] for line in out.stdout.splitlines()} >= {"rollups", "retention"}


def test_it_runs_only_the_named_job_once(engine: Engine, database_url: str) -> None:
    out = _worker(database_url, "--once", "--only", "rollups")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rollups: ok")
    assert _runs(engine) == [("rollups", True, None)]
    with engine.connect() as conn:
        beats = conn.execute(text("SELECT status->>'stopping' FROM worker_heartbeats")).all()
    assert beats == [("true",)]


def test_it_refuses_an_unknown_job(database_url: str) -> None:
    out = _worker(database_url, "--once", "--only", "no_such_job")
    assert out.returncode == 2 and "no_such_job" in out.stderr


def _boom(engine: Engine, now: datetime) -> str:
    raise RuntimeError("collector exploded")


def _fine(engine: Engine, now: datetime) -> str:
    return "did it"


def test_it_records_a_failing_job_and_runs_the_others(engine: Engine) -> None:
    jobs = [Job("boom", _boom, 10), Job("fine", _fine, 10, singleton=False)]
    worker = Worker(engine, jobs, {"boom": 10, "fine": 10})
    assert worker.run_once() == 1
    assert _runs(engine) == [
        ("boom", False, "RuntimeError: collector exploded"),
        ("fine", True, None),
    ]
    assert worker.states["boom"].failures == 1 and worker.states["fine"].last_message == "did it"


def test_it_backs_off_a_job_that_keeps_failing(engine: Engine) -> None:
    worker = Worker(engine, [Job("boom", _boom, 10)], {"boom": 10})
    assert worker.run_job(worker.jobs[0]) is False
    assert worker.run_job(worker.jobs[0]) is None  # inside its backoff: skipped, not re-run
    assert len(_runs(engine)) == 1
    worker.locks.release_all()


@pytest.mark.parametrize(
    ("every", "failures", "expected"),
    [(15, 0, 0), (15, 1, 15), (15, 2, 30), (15, 4, 120), (15, 10, 600), (3600, 1, 600)],
)
def test_it_computes_backoff(every: float, failures: int, expected: float) -> None:
    assert backoff_seconds(every, failures) == expected


def test_it_lets_one_worker_lead_and_re_elects_when_it_dies(engine: Engine) -> None:
    first, second = SingletonLocks(engine), SingletonLocks(engine)
    assert first.acquire("rollups") and first.acquire("rollups")
    assert not second.acquire("rollups")
    assert second.acquire("retention")  # locks are per job
    key = _key("rollups")
    with engine.begin() as conn:  # the leader's backend dies (crash, kill -9, restart)
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND classid::bigint = :c AND objid::bigint = :o"
            ),
            {"c": (key >> 32) & 0xFFFFFFFF, "o": key & 0xFFFFFFFF},
        )
    _wait_for(lambda: second.acquire("rollups"))
    assert not first.acquire("rollups")  # it noticed, reconnected, and lost the election
    first.release_all()
    second.release_all()


def _key(name: str) -> int:
    from jobs.locks import lock_key

    return lock_key(name)


@pytest.fixture
def running_worker(database_url: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.worker", "--only", "rollups"],
        cwd=ROOT, env=_env(database_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _leader_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM worker_heartbeats WHERE status->'leader_of' ? 'rollups'")
        ).scalar_one()


def test_it_skips_a_singleton_another_worker_leads_and_stops_on_sigterm(
    engine: Engine, database_url: str, running_worker: subprocess.Popen[str]
) -> None:
    _wait_for(lambda: _leader_count(engine) == 1)
    out = _worker(database_url, "--once", "--only", "rollups")
    assert out.returncode == 0 and "skipped" in out.stdout
    started = time.monotonic()
    running_worker.send_signal(signal.SIGTERM)
    assert running_worker.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    assert _leader_count(engine) == 0  # its last heartbeat says it leads nothing


def _count_points(engine: Engine, now: datetime) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one())


def test_it_carries_on_after_the_database_drops_every_connection(engine: Engine) -> None:
    worker = Worker(engine, [Job("count", _count_points, 10)], {"count": 10})
    assert worker.run_job(worker.jobs[0]) is True and worker.locks.held == {"count"}
    with engine.connect() as conn:  # what a database restart does to every session
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert worker.run_job(worker.jobs[0], force=True) is True  # pre-ping reconnects
    assert [r[:2] for r in _runs(engine)] == [("count", True), ("count", True)]
    worker.locks.release_all()
