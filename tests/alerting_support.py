"""Alerting test helpers: a real local webhook receiver (for Apprise `json://`), rule and
channel builders, and metric points written where the engine reads them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Connection, Engine

from monitoring_core.alerts.store import create_rule
from monitoring_core.notify.channels import create_channel
from monitoring_core.partitions import ensure_partitions
from tests.rollup_fixtures import add_points, add_series


@dataclass
class Receiver:
    """Records every POST; paths starting with /fail answer 500."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def json_url(self, path: str = "hook") -> str:
        return self.url.replace("http://", "json://") + "/" + path

    def titles(self) -> list[str]:
        return [r["body"]["title"] for r in self.received]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            failing = self.path.startswith("/fail")
            if not failing:
                receiver.received.append({"path": self.path, "body": body})
                receiver.event.set()
            self.send_response(500 if failing else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def channel(conn: Connection, url: str, name: str = "hook", **extra: Any) -> int:
    return int(create_channel(conn, body={"name": name, "url": url, **extra})["id"])


def threshold_rule(conn: Connection, now: datetime, **overrides: Any) -> int:
    cfg = {
        "type": "threshold",
        "metric": "checkout_latency_ms",
        "aggregation": "avg",
        "operator": "greater_than",
        "value": 100,
        "window_minutes": 1,
    }
    cfg.update(overrides.pop("cfg", {}))
    body = {
        "alert_name": overrides.pop("alert_name", "Checkout slow"),
        "condition_config": cfg,
        "severity_level": overrides.pop("severity_level", "high"),
        **overrides,
    }
    return int(create_rule(conn, body=body, created_by="test", now=now)["id"])


def partitions_around(engine: Engine, moment: datetime) -> None:
    with engine.begin() as conn:
        # only the table and day the tests write: every partition makes each TRUNCATE slower
        ensure_partitions(conn, start=moment, end=moment, tables=("metric_points",))


def point(
    engine: Engine,
    at: datetime,
    value: float,
    *,
    metric: str = "checkout_latency_ms",
    dims: dict[str, Any] | None = None,
) -> None:
    with engine.begin() as conn:
        add_points(conn, add_series(conn, metric, dims or {}), [(at, value)], ingested_at=at)
