"""The watcher's own jobs: the outbound heartbeat ping and the failing-job self-alert.

`ping_heartbeat` GETs MONITORING_HEARTBEAT_URL every minute (a Healthchecks.io check, or any
service that alerts when pings stop), so a dead worker or host is noticed from outside; while
a job keeps failing it pings `<url>/fail` instead, which Healthchecks shows as down at once.
A failed ping is logged and reported in the job's summary, never raised: the outside service
is the one that notices missing pings.
"""

from __future__ import annotations

import http.client
import logging
import urllib.request
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["PING_TIMEOUT_S", "ping_heartbeat", "watch_jobs"]

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 10.0


def ping_heartbeat(engine: Engine, now: datetime) -> str:
    from monitoring_core.config import load_settings
    from monitoring_core.health.watch import failing_jobs, heartbeat_ping_url

    url = load_settings().heartbeat_url
    if not url:
        return "MONITORING_HEARTBEAT_URL is not set: nothing to ping"
    try:
        with engine.connect() as conn:
            failing = [job["job"] for job in failing_jobs(conn)]
    except SQLAlchemyError:  # alive but cut off from its database: that is a failure too
        log.warning("heartbeat: the database is unreachable", exc_info=True)
        failing = ["database unreachable"]
    target = heartbeat_ping_url(url, failing=bool(failing))
    shown = target.split("://", 1)[-1].split("/", 1)[0]  # the host only: the path is a secret
    try:
        with urllib.request.urlopen(target, timeout=PING_TIMEOUT_S) as response:
            status = response.status
    except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts
        log.warning("heartbeat ping to %s failed: %s", shown, exc)
        return f"ping to {shown} failed: {type(exc).__name__}"
    word = f"fail ({', '.join(failing)})" if failing else "ok"
    return f"pinged {shown}: {word}, HTTP {status}"


def watch_jobs(engine: Engine, now: datetime) -> str:
    from monitoring_core.config import load_settings
    from monitoring_core.flows.job_watch import watch_failing_jobs

    public_url = load_settings().public_url
    with engine.begin() as conn:
        return watch_failing_jobs(conn, now, public_url=public_url).summary()
