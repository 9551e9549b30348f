"""Demo traces and logs that tell the same story as the demo's errors and API timings.

- Every error burst trace (the demo errors' cross-service burst shares trace ids across
  services) becomes a trace: a web request into the API, the API's database call, each
  failing with the event's message, and ERROR log lines carrying the same trace id.
- The payment-provider outage (a wedding-day evening, `traffic.bad_spells`): checkout
  requests whose provider call times out, failing spans and ERROR logs sharing trace ids.
- Quiet background traffic over the last day: supplier search requests (slower since the
  search release, as the API timings show) with INFO logs.

Spans and records are written directly (not through the API timings pipeline: the demo's API
timings come from `performance`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.demo.traffic import bad_spells
from monitoring_core.logs.store import insert_logs
from monitoring_core.traces.store import insert_spans

__all__ = ["load"]

SERVER, CLIENT, INTERNAL = 2, 3, 1
OK, ERROR = 1, 2
_BURST_SERVICES = {"web": ("GET /api/bookings/{id}", SERVER), "api": ("SELECT bookings", CLIENT)}


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _ids(rng: np.random.Generator, size: int) -> str:
    return bytes(rng.integers(1, 256, size, dtype=np.uint8)).hex()


def _span(
    at: datetime, trace: str, span_id: str, parent: str | None, service: str, name: str,
    kind: int, ms: float, status: int, message: str | None, attributes: dict[str, Any],
    events: list[dict[str, Any]] | None = None,
) -> tuple[Any, ...]:  # fmt: skip
    resource = {"service.name": service, "deployment.environment": "production"}
    return (at, trace, span_id, parent, service, name, kind, ms, status, message, attributes,
            events or [], resource, "demo")  # fmt: skip


def _log(
    at: datetime, severity: int, body: str, trace: str | None, span_id: str | None, service: str
) -> tuple[Any, ...]:
    text_level = {9: "INFO", 13: "WARN", 17: "ERROR"}[severity]
    return (at, severity, text_level, body, trace, span_id, service, {}, {"service.name": service})


def _bursts(conn: Connection, start: datetime, now: datetime, rng: np.random.Generator,
            spans: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]) -> None:  # fmt: skip
    rows = conn.execute(
        text(
            "SELECT trace_id, service_name, time, message FROM error_events"
            " WHERE trace_id IS NOT NULL AND time >= :s AND time < :e ORDER BY trace_id, time"
        ),
        {"s": start, "e": now},
    )
    by_trace: dict[str, list[Any]] = {}
    for row in rows:
        by_trace.setdefault(row.trace_id, []).append(row)
    for trace, events in by_trace.items():
        root_id, first = _ids(rng, 8), events[0].time - timedelta(milliseconds=300)
        spans.append(
            _span(first, trace, root_id, None, "web", "GET /api/bookings/{id}", SERVER, 3_050.0,
                  ERROR, "503 from the API", {"http.request.method": "GET",
                  "http.route": "/api/bookings/{id}", "http.response.status_code": 503})
        )  # fmt: skip
        for k, event in enumerate(events):
            name, kind = _BURST_SERVICES.get(
                event.service_name, (f"{event.service_name} call", CLIENT)
            )
            span_id = _ids(rng, 8)
            at = first + timedelta(milliseconds=40 + 20 * k)
            spans.append(
                _span(at, trace, span_id, root_id, event.service_name, name, kind,
                      2_900.0 - 20 * k, ERROR, event.message[:200], {"demo.burst": True})
            )  # fmt: skip
            logs.append(_log(event.time, 17, event.message, trace, span_id, event.service_name))


def _outage(start: datetime, now: datetime, rng: np.random.Generator,
            spans: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]) -> None:  # fmt: skip
    spell = bad_spells(now)["payment_outage"]
    begin = max(spell.start.astype("datetime64[us]").item(), _naive_utc(start))
    end = min(spell.end.astype("datetime64[us]").item(), _naive_utc(now))
    at, stop = begin.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    while at < stop:
        trace, root_id, call_id = _ids(rng, 16), _ids(rng, 8), _ids(rng, 8)
        booking = int(rng.integers(1000, 99_999))
        failed = rng.random() < 0.7
        provider_ms = 3_000.0 if failed else float(rng.uniform(400, 1_500))
        attrs = {"http.request.method": "POST", "http.route": "/api/bookings/{id}/pay",
                 "http.response.status_code": 502 if failed else 200, "booking.id": booking}  # fmt: skip
        spans.append(
            _span(at, trace, root_id, None, "checkout", "POST /api/bookings/{id}/pay", SERVER,
                  provider_ms + 60, ERROR if failed else OK, None, attrs)
        )  # fmt: skip
        events = [{"name": "retry", "time": (at + timedelta(seconds=1)).isoformat(),
                   "attributes": {"attempt": 2}}] if failed else []  # fmt: skip
        spans.append(
            _span(at + timedelta(milliseconds=30), trace, call_id, root_id, "payments",
                  "POST payment-provider /charge", CLIENT, provider_ms, ERROR if failed else OK,
                  "provider timeout after 3 s" if failed else None,
                  {"server.address": "api.payprovider.example", "booking.id": booking}, events)
        )  # fmt: skip
        logs.append(
            _log(at, 9, f"charging deposit for booking {booking}", trace, root_id, "checkout")
        )
        if failed:
            logs.append(
                _log(at + timedelta(seconds=3), 17,
                     f"payment provider timed out for booking {booking} after 3 s", trace,
                     call_id, "payments")
            )  # fmt: skip
        at += timedelta(seconds=float(rng.uniform(10, 30)))


def _background(at: datetime, now: datetime, loaded: datetime, rng: np.random.Generator,
                spans: list[tuple[Any, ...]], logs: list[tuple[Any, ...]]) -> None:  # fmt: skip
    """Vendor searches from `at` until `now`, one every 1–3 minutes, slow since the search
    regression of the history loaded up to `loaded`."""
    regression = bad_spells(loaded)["search_regression"].start.astype("datetime64[us]").item()
    while at < now:
        trace, root_id, db_id = _ids(rng, 16), _ids(rng, 8), _ids(rng, 8)
        slow = _naive_utc(at) >= regression
        db_ms = float(rng.gamma(2.0, 60.0 if slow else 15.0))
        attrs = {"http.request.method": "GET", "http.route": "/api/vendors/search",
                 "http.response.status_code": 200}  # fmt: skip
        spans.append(_span(at, trace, root_id, None, "search", "GET /api/vendors/search",
                           SERVER, db_ms + 8, OK, None, attrs))  # fmt: skip
        spans.append(_span(at + timedelta(milliseconds=3), trace, db_id, root_id, "search",
                           "SELECT vendors ranked", CLIENT, db_ms, OK, None,
                           {"db.system": "postgresql"}))  # fmt: skip
        logs.append(
            _log(at, 9, f"vendor search served in {db_ms + 8:.0f} ms", trace, root_id, "search")
        )
        at += timedelta(seconds=float(rng.uniform(60, 180)))


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Spans and log records for [now - days, now); after `errors` (reads its trace ids)."""
    start = now - timedelta(days=days)
    spans: list[tuple[Any, ...]] = []
    logs: list[tuple[Any, ...]] = []
    _bursts(conn, start, now, rng, spans, logs)
    _outage(start, now, rng, spans, logs)
    _background(now - timedelta(days=1), now, now, rng, spans, logs)
    spans = [s for s in spans if start <= s[0] < now]
    logs = [r for r in logs if start <= r[0] < now]
    return {"spans": insert_spans(conn, spans), "log_records": insert_logs(conn, logs)}


def load_window(
    conn: Connection, start: datetime, now: datetime, loaded: datetime, rng: np.random.Generator
) -> dict[str, int]:
    """Spans and log records in [start, now) after a history loaded up to `loaded`
    (`demo.feed`): the vendor searches (a first one within two minutes of `start`)."""
    spans: list[tuple[Any, ...]] = []
    logs: list[tuple[Any, ...]] = []
    first = start + timedelta(seconds=float(rng.uniform(0, 120)))
    _background(first, now, loaded, rng, spans, logs)
    return {"spans": insert_spans(conn, spans), "log_records": insert_logs(conn, logs)}
