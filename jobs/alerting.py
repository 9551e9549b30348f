"""Alerting's jobs: evaluation, notification delivery, escalation (thin adapters)."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine

__all__ = ["deliver_notifications", "escalate_alerts", "evaluate_alerts"]


def evaluate_alerts(engine: Engine, now: datetime) -> str:
    """Not a singleton: each live worker evaluates its share of the rules, claimed per cycle."""
    from jobs import identity
    from monitoring_core.config import load_settings
    from monitoring_core.flows.alert_cycle import run_evaluation
    from monitoring_core.live_settings import read_calendar

    settings = load_settings()
    return run_evaluation(
        engine,
        now,
        tz=read_calendar(engine, settings),  # the live wedding calendar, read once per cycle
        worker_id=identity.worker_id(),
        interval_s=settings.eval_interval_s,
    ).summary()


def deliver_notifications(engine: Engine, now: datetime) -> str:
    """Not a singleton: several workers share the outbox safely (SKIP LOCKED leases)."""
    from monitoring_core.flows.notification_delivery import deliver_due

    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()

    def clock() -> datetime:
        # Each claim's lease starts when it is taken, not when the job started: a long run of
        # slow sends would otherwise hand out leases that have already run out.
        return now + timedelta(seconds=time.monotonic() - started)

    sent = failed = 0
    while True:  # rounds of 50 until nothing is due (failed rows move into the future)
        report = deliver_due(engine, clock(), worker_id=worker_id, clock=clock)
        if not report.sent + report.failed:
            return f"sent {sent}, failed {failed}"
        sent, failed = sent + report.sent, failed + report.failed


def escalate_alerts(engine: Engine, now: datetime) -> str:
    from monitoring_core.config import load_settings
    from monitoring_core.flows.alert_escalation import escalate_unacknowledged
    from monitoring_core.live_settings import read_live

    settings = load_settings()
    with engine.begin() as conn:
        sent = escalate_unacknowledged(
            conn,
            now=now,
            tz=read_live(conn, settings).calendar,
            public_url=settings.public_url,
        )
    return f"{sent} escalation steps"
