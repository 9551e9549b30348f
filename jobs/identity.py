"""This process's worker id, for jobs that split work across workers (`monitoring_core.sharding`).

`jobs.worker.Worker` sets it to the id it writes into `worker_heartbeats`; a job run outside a
worker (a test, `--once` from a script that builds no Worker) sees None and does all the work.
"""

from __future__ import annotations

__all__ = ["set_worker_id", "worker_id"]

_current: str | None = None


def set_worker_id(value: str | None) -> None:
    global _current
    _current = value


def worker_id() -> str | None:
    return _current
