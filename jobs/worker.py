"""The worker: `python -m jobs.worker [--once] [--only JOB ...] [--list]`.

- Jobs come from `jobs.registry.JOBS` and run on a `schedule` scheduler of their own.
- Each run goes through `Worker.run_job`: its time, log line and `job_runs` row; an exception is
  recorded and the loop carries on (`schedule` itself does not catch). A job that keeps failing
  backs off (`backoff_seconds`) instead of failing every few seconds.
- Singleton jobs run only on the worker holding the job's advisory lock (`jobs.locks`).
- Every job gets pooled connections with `pool_pre_ping`, so a restarted database is
  reconnected on the next run; the lock connection is re-established the same way.
- A heartbeat thread upserts `worker_heartbeats` every HEARTBEAT_S seconds, also while a long
  job runs, with each job's last result in `status`.
- SIGTERM/SIGINT: the loop stops after the current job; if that job is still running after
  STOP_GRACE_S, the process exits anyway (its transaction rolls back when the connection
  drops, so nothing is left half-done). Either way it is gone within 10 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import schedule
from sqlalchemy import Engine, text

from jobs import identity
from jobs.locks import SingletonLocks
from jobs.registry import JOBS, Job, find_job

__all__ = ["HEARTBEAT_S", "JobState", "Worker", "backoff_seconds", "main"]

QUIET_BELOW_S = 10.0
log = logging.getLogger("worker")
HEARTBEAT_S = 5.0
STOP_GRACE_S = 8.0
MAX_BACKOFF_S = 600.0


def backoff_seconds(every_seconds: float, failures: int) -> float:
    """Extra wait before the next run after `failures` consecutive failures (0 after success)."""
    if failures <= 0:
        return 0.0
    return min(every_seconds * 2 ** (failures - 1), MAX_BACKOFF_S)


@dataclass
class JobState:
    failures: int = 0
    not_before: float = 0.0  # time.monotonic() before which the job is skipped
    last_run: str | None = None
    last_ok: bool | None = None
    last_message: str | None = None
    last_duration_ms: float | None = None

    def as_status(self) -> dict[str, Any]:
        return {
            "last_run": self.last_run,
            "ok": self.last_ok,
            "message": self.last_message,
            "duration_ms": self.last_duration_ms,
            "failures": self.failures,
        }


class Worker:
    """Runs jobs safely; see the module docstring."""

    def __init__(self, engine: Engine, jobs: list[Job], intervals: dict[str, float]) -> None:
        self.engine, self.jobs, self.intervals = engine, jobs, intervals
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        identity.set_worker_id(self.worker_id)  # jobs that split work claim under this id
        self.started_at = datetime.now(UTC)
        self.locks = SingletonLocks(engine)
        self.states = {job.name: JobState() for job in jobs}
        self.stop_event = threading.Event()

    def run_job(self, job: Job, *, force: bool = False) -> bool | None:
        """Run `job` once if due and led by us: True ok, False failed, None skipped."""
        state = self.states[job.name]
        if not force and time.monotonic() < state.not_before:
            return None
        if job.singleton and not self.locks.acquire(job.name):
            return None
        started, t0 = datetime.now(UTC), time.perf_counter()
        try:
            message, ok = job.func(self.engine, started), True
        except Exception as exc:  # the safe wrapper: record, log, carry on
            message, ok = f"{type(exc).__name__}: {exc}"[:2000], False
            log.exception("job %s failed", job.name)
        duration_ms = (time.perf_counter() - t0) * 1000
        self._remember(job, state, started, ok, message, duration_ms)
        self._record(job.name, started, duration_ms, ok, None if ok else message)
        return ok

    def _remember(
        self,
        job: Job,
        state: JobState,
        started: datetime,
        ok: bool,
        message: str | None,
        duration_ms: float,
    ) -> None:
        state.failures = 0 if ok else state.failures + 1
        delay = backoff_seconds(self.intervals[job.name], state.failures)
        state.not_before = time.monotonic() + delay
        state.last_run, state.last_ok = started.isoformat(), ok
        state.last_message, state.last_duration_ms = message, round(duration_ms, 1)
        if ok:
            # Jobs that run every few seconds would drown the log at INFO; they stay in job_runs.
            level = logging.DEBUG if self.intervals[job.name] < QUIET_BELOW_S else logging.INFO
            log.log(level, "job %s ok in %.0f ms: %s", job.name, duration_ms, message or "")
        else:
            log.warning(
                "job %s backs off %.0f s after %d failures", job.name, delay, state.failures
            )

    def _record(
        self, name: str, started: datetime, duration_ms: float, ok: bool, error: str | None
    ) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO job_runs (job, worker_id, started_at, duration_ms, ok, error) "
                        "VALUES (:j, :w, :s, :d, :ok, :e)"
                    ),
                    {
                        "j": name,
                        "w": self.worker_id,
                        "s": started,
                        "d": duration_ms,
                        "ok": ok,
                        "e": error,
                    },
                )
        except Exception:  # the database may be down: the run is still logged
            log.warning("could not record the run of %s", name, exc_info=True)

    def heartbeat(self, *, stopping: bool = False) -> None:
        """Upsert this worker's row in worker_heartbeats (errors are logged, never raised)."""
        status = {
            "jobs": {name: s.as_status() for name, s in self.states.items()},
            "leader_of": sorted(self.locks.held),
            "stopping": stopping,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, "
                        "last_seen, status) VALUES (:w, :h, :p, :s, now(), CAST(:st AS jsonb)) "
                        "ON CONFLICT (worker_id) DO UPDATE SET last_seen = now(), "
                        "status = EXCLUDED.status"
                    ),
                    {
                        "w": self.worker_id,
                        "h": socket.gethostname(),
                        "p": os.getpid(),
                        "s": self.started_at,
                        "st": _json(status),
                    },
                )
        except Exception:
            log.warning("heartbeat failed (database unreachable?)", exc_info=True)

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_S):
            self.heartbeat()

    def run_once(self) -> int:
        """Every job one time (skipping singletons another worker leads); 1 if any failed."""
        self.heartbeat()
        results = {job.name: self.run_job(job, force=True) for job in self.jobs}
        for name, ok in results.items():
            word = {True: "ok", False: "FAILED", None: "skipped (another worker leads it)"}[ok]
            print(f"{name}: {word} {self.states[name].last_message or ''}".rstrip(), flush=True)
        self.locks.release_all()
        self.heartbeat(stopping=True)
        return 1 if any(ok is False for ok in results.values()) else 0

    def run_forever(self) -> int:
        scheduler = schedule.Scheduler()
        for job in self.jobs:
            every = max(1, round(self.intervals[job.name]))  # schedule counts whole seconds
            scheduler.every(every).seconds.do(self.run_job, job)
        self.heartbeat()
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        for job in self.jobs:  # first round at start, then on schedule
            if not self.stop_event.is_set():
                self.run_job(job)
        while not self.stop_event.is_set():
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            self.stop_event.wait(min(max(idle or 0.0, 0.05), 1.0))
        self.locks.release_all()
        self.heartbeat(stopping=True)
        log.info("worker %s stopped", self.worker_id)
        return 0

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: stop after the current job; force exit after STOP_GRACE_S."""
        log.info("signal %d: stopping", signum)
        self.stop_event.set()
        timer = threading.Timer(STOP_GRACE_S, _force_exit)
        timer.daemon = True
        timer.start()


def _force_exit() -> None:
    log.warning("a job did not finish within %.0f s of the stop signal: exiting", STOP_GRACE_S)
    logging.shutdown()
    os._exit(0)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--once", action="store_true", help="run every job one time and exit")
    parser.add_argument(
        "--only", action="append", metavar="JOB", help="run only this job (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    return parser.parse_args(argv)


def _intervals(jobs: list[Job], settings: Any) -> dict[str, float]:
    return {
        job.name: float(
            getattr(settings, job.every_setting) if job.every_setting else job.every_seconds
        )
        for job in jobs
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from monitoring_core.config import load_settings

    settings = load_settings()
    try:
        jobs = [find_job(name) for name in args.only] if args.only else list(JOBS)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    intervals = _intervals(jobs, settings)
    if args.list:
        for job in jobs:
            kind = "singleton" if job.singleton else "every worker"
            print(
                f"{job.name:<24} every {intervals[job.name]:>6g} s  {kind:<12}  {job.description}"
            )
        return 0
    from monitoring_core.db import engine_from_settings

    worker = Worker(engine_from_settings(settings), jobs, intervals)
    if args.once:
        return worker.run_once()
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    return worker.run_forever()


if __name__ == "__main__":
    sys.exit(main())
