"""sentry_sdk with tracing on: `transaction` envelope items become spans and API timings."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sqlalchemy import Engine, text

from tests.test_errors_sentry import sentry


def _with_request(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    # What a web framework integration (Starlette, Django …) adds to every event.
    event["request"] = {"method": "GET", "url": "http://shop.test/api/bookings/42"}
    return event


def test_transactions_become_spans_and_api_timings(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    with sentry(api_server, ingest_key, traces_sample_rate=1.0):
        sentry_sdk.get_isolation_scope().add_event_processor(_with_request)
        with sentry_sdk.start_transaction(
            name="/api/bookings/{id}", op="http.server", source="route"
        ) as txn:
            with sentry_sdk.start_span(op="db.query", name="SELECT bookings") as span:
                span.set_data("db.system", "postgresql")
            txn.set_http_status(404)
            trace_id = txn.trace_id
    with engine.connect() as conn:
        spans = list(
            conn.execute(
                text(
                    "SELECT name, kind, parent_span_id, status_code, attributes, resource "
                    "FROM spans WHERE trace_id = :t ORDER BY kind DESC"
                ),
                {"t": trace_id},
            )
        )
        timings = list(conn.execute(text("SELECT method, endpoint, status_code FROM api_timings")))
    assert [(s.name, s.kind) for s in spans] == [("/api/bookings/{id}", 2), ("SELECT bookings", 1)]
    root, child = spans
    assert child.parent_span_id is not None and root.parent_span_id is None
    assert child.attributes["db.system"] == "postgresql"
    assert child.attributes["sentry.op"] == "db.query"
    assert root.resource["service.version"] == "payments@1.4.0"
    assert root.status_code == 2  # not_found
    assert [tuple(t) for t in timings] == [("GET", "/api/bookings/{id}", 404)]


def test_sentry_logs_become_log_records(api_server: str, ingest_key: str, engine: Engine) -> None:
    # (the SDK also sends stdlib log records, e.g. this in-process server's access log lines,
    # depending on the level earlier tests left: only this test's own lines are compared)
    with sentry(api_server, ingest_key, traces_sample_rate=1.0, enable_logs=True):
        with sentry_sdk.start_transaction(name="nightly-payouts", op="task") as txn:
            sentry_sdk.logger.error("payout {payout_id} refused", payout_id=77)
            sentry_sdk.logger.info("payouts done")
            trace_id = txn.trace_id
    with engine.connect() as conn:
        rows = list(
            conn.execute(
                text(
                    "SELECT body, severity_number, severity_text, trace_id, attributes"
                    " FROM log_records WHERE body LIKE 'payout%' ORDER BY time"
                )
            )
        )
    assert [(r.body, r.severity_number, r.severity_text) for r in rows] == [
        ("payout 77 refused", 17, "ERROR"),
        ("payouts done", 9, "INFO"),
    ]
    assert rows[0].trace_id == trace_id
    assert rows[0].attributes["sentry.message.parameter.payout_id"] == 77
