"""Log search through the block trigram index (no pg_trgm), and the per-service daily cap:
records over it refused with partial_success / 429 naming the cap, counted in log_volume."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from sqlalchemy import Engine, text

from monitoring_core.logs import queries
from monitoring_core.logs.store import insert_logs
from monitoring_core.logs.trigrams import (
    block_trigrams,
    fold,
    needle_trigrams,
    trace_code,
    verbatim_run,
)
from monitoring_core.partitions import ensure_partitions

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def record(at: datetime, service: str, body: str, severity: int = 9) -> tuple[Any, ...]:
    return (at, severity, None, body, None, None, service, {}, {})


def test_trigrams_fold_ascii_only_and_a_needle_is_covered_by_its_block() -> None:
    bodies = ["Charge FAILED: Provider timeout", "Größe überschritten"]
    block = set(block_trigrams(bodies))
    assert set(needle_trigrams("provider TIMEOUT")) <= block
    assert set(needle_trigrams("größe")) <= block
    # a needle asks only for ASCII codes (Postgres's lower() checks the rest)
    assert set(needle_trigrams("ÜBERschritten")) <= block and needle_trigrams("GRÖßE") == []
    assert fold("ÄbC") == "Äbc".encode()
    assert needle_trigrams("ok") == []  # shorter than 3 bytes: no index
    # no trigram spans two bodies
    assert not set(needle_trigrams("outgr")) <= set(block_trigrams(["timeout", "gr"]))


@pytest.fixture
def stored(engine: Engine) -> Iterator[Engine]:
    yesterday = NOW - timedelta(days=1)
    with engine.begin() as conn:
        ensure_partitions(conn, start=yesterday, end=NOW)
        insert_logs(conn, [record(yesterday + timedelta(hours=1), "payments",
                                  "provider TIMEOUT long ago")])  # fmt: skip
        insert_logs(
            conn,
            [record(NOW - timedelta(minutes=i), "payments", f"charge {i} ok") for i in range(50)]
            + [record(NOW - timedelta(minutes=7), "payments", "charge 7: Provider Timeout", 17)]
            + [record(NOW - timedelta(minutes=3), "photos", "upload: provider timeout", 13)],
        )
        insert_logs(conn, [record(NOW - timedelta(minutes=1), "photos", "thumbnail 50%_done"),
                           record(NOW - timedelta(minutes=1), "photos", "Größe überschritten")])  # fmt: skip
    yield engine


def test_substring_search_reads_only_the_blocks_that_can_hold_it(stored: Engine) -> None:
    window = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(seconds=1)}
    with stored.connect() as conn:
        found = queries.search_logs(conn, **window, contains="PROVIDER timeout")
        assert [r["body"] for r in found] == [
            "upload: provider timeout",
            "charge 7: Provider Timeout",
        ]
        only = queries.search_logs(conn, **window, contains="timeout", service="payments")
        assert [r["body"] for r in only] == ["charge 7: Provider Timeout"]
        errors = queries.search_logs(conn, **window, contains="timeout", min_severity=17)
        assert len(errors) == 1
        assert [r["body"] for r in queries.search_logs(conn, **window, contains="50%_")] == [
            "thumbnail 50%_done"
        ]  # % and _ are literal characters
        assert len(queries.search_logs(conn, **window, contains="ok")) == 50  # no trigram
        for needle in ("ÜBERSCHRITTEN", "GRÖßE"):  # non-ASCII letters fold too
            assert [r["body"] for r in queries.search_logs(conn, **window, contains=needle)] == [
                "Größe überschritten"
            ]
        hist = queries.log_histogram(
            conn, **window, interval=timedelta(minutes=30), contains="timeout"
        )
        assert sum(r["count"] for r in hist) == 2
        blocks = conn.execute(
            text(
                "SELECT count(DISTINCT block), count(*) FILTER (WHERE block_trgm IS NOT NULL)"
                " FROM log_records"
            )
        ).one()
        # one block per batch, service and day; its earliest row holds the trigrams
        assert tuple(blocks) == (4, 4)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text("EXPLAIN SELECT block FROM log_records WHERE block_trgm @> ARRAY[1, 2]")
            )
        )
        assert "ix_log_records_block_trgm" in plan or "block_trgm_idx" in plan


def test_verbatim_run_is_what_every_case_variant_of_a_match_holds() -> None:
    assert verbatim_run("vendor 4242 processed") == " 4242 "
    assert verbatim_run("x: 12.5 ms") == ": 12.5 "
    assert verbatim_run("50%_") == "50%_"
    assert verbatim_run("timeout") == verbatim_run("a b") == ""  # letters only, or 1 char
    assert verbatim_run("Größe 42") == " 42"
    for body in ("VENDOR 4242 Processed", "vEnDoR 4242 pRoCeSsEd", "ⅠD vendor 4242 processed"):
        assert verbatim_run("vendor 4242 processed") in body


def test_digit_trigrams_are_left_out_of_blocks_and_needles_alike() -> None:
    block = set(block_trigrams(["order 4242 paid", "Order 123"]))
    digits = {int.from_bytes(t, "big") for t in (b"424", b"242", b"123")}
    assert not digits & block and not digits & set(needle_trigrams("order 4242 paid"))
    assert int.from_bytes(b"r 4", "big") in block  # a digit next to other bytes stays
    assert set(needle_trigrams("order 4242 paid")) <= block
    assert needle_trigrams("4242") == []  # digits only: the window's rows are checked


def test_the_verbatim_run_rules_rows_out_and_case_variants_still_match(
    stored: Engine,
) -> None:
    window = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(seconds=1)}
    with stored.begin() as conn:
        insert_logs(
            conn,
            [
                record(NOW - timedelta(minutes=2), "vendors", "VENDOR 4242 Processed in 5 ms"),
                record(NOW - timedelta(minutes=2), "vendors", "vendor 42420 processed in 5 ms"),
                record(NOW - timedelta(minutes=2), "vendors", "vendor 4242  processed"),
            ],
        )
        found = queries.search_logs(conn, **window, contains="vendor 4242 PROCESSED")
        assert [r["body"] for r in found] == ["VENDOR 4242 Processed in 5 ms"]
        found = queries.search_logs(conn, **window, contains="4242")  # no code: a scan
        assert len(found) == 3
        hist = queries.log_histogram(
            conn, **window, interval=timedelta(hours=1), contains="vendor 4242 processed"
        )
        assert sum(r["count"] for r in hist) == 1


def test_logs_of_a_trace_are_found_through_their_blocks_codes(stored: Engine) -> None:
    """No per-record trace id index (migration 0032): a block's codes hold its records'
    trace ids, so a trace's logs come from the blocks holding its code."""
    trace, other = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b700f067aa0ba902b7"
    window = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(seconds=1)}
    with stored.begin() as conn:
        for i in range(3):  # three blocks (batches); the trace in the first and the last
            insert_logs(
                conn,
                [
                    (NOW - timedelta(minutes=10 - i), 9, None, f"step {i}", t, None, "api", {}, {})
                    for t in ((trace, other) if i != 1 else (other, None))
                ],
            )
        found = queries.search_logs(conn, **window, trace_id=trace)
        assert [r["body"] for r in found] == ["step 2", "step 0"]
        assert (
            queries.search_logs(conn, **window, trace_id=trace, contains="step 2")[0]["trace_id"]
            == trace
        )
        assert len(queries.search_logs(conn, **window, trace_id=other)) == 3
        assert queries.search_logs(conn, **window, trace_id="ab" * 16) == []
        hist = queries.log_histogram(conn, **window, interval=timedelta(hours=1), trace_id=trace)
        assert sum(r["count"] for r in hist) == 2
        assert (
            trace_code(trace)
            in conn.execute(
                text(
                    "SELECT block_trgm FROM log_records WHERE body = 'step 0' AND block_trgm IS NOT NULL"
                )
            ).scalar_one()
        )
        indexes = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = 'log_records'")
        ).scalars()
        assert not [d for d in indexes if "(trace_id)" in d]


def test_the_gin_search_cannot_walk_the_block_end_index(stored: Engine) -> None:
    """The candidate blocks come from the GIN index: the partial index over block_end
    (migration 0031) is not usable for that query (with 0030's predicate it was, and the
    planner read every summary row of the window through it: 3.9 s at 10 M records)."""
    params = {"q": [1, 2], "s": NOW - timedelta(hours=1), "e": NOW, "svc": None}
    with stored.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        for query in (queries._CANDIDATES, queries._OLDER):
            sql = "EXPLAIN " + str(query)
            plan = "\n".join(row[0] for row in conn.execute(text(sql), {**params, "since": NOW}))
            assert "block_end_idx" not in plan, plan
        # these settings leave index scans open: a strict condition on block_end takes it
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text("EXPLAIN SELECT block FROM log_records WHERE block_end >= :s"), params
            )
        )
        assert "block_end_idx" in plan, plan


@pytest.mark.parametrize("probe", [1, 2])
def test_newest_blocks_first_then_older_ones_give_the_same_rows(
    stored: Engine, probe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the newest blocks' probe finds (a common needle: their hits, then older blocks
    from the GIN index; a rare one: the GIN index alone), the rows are the same."""
    monkeypatch.setattr(queries, "PROBE_BLOCKS", probe)
    monkeypatch.setattr(queries, "PROBE_SPAN", timedelta(minutes=1))
    window = {"start": NOW - timedelta(hours=1), "end": NOW + timedelta(seconds=1)}
    with stored.connect() as conn:
        found = queries.search_logs(conn, **window, contains="PROVIDER timeout")
        assert [r["body"] for r in found] == [
            "upload: provider timeout",
            "charge 7: Provider Timeout",
        ]
        assert [r["body"] for r in queries.search_logs(conn, **window, contains="thumbnail")] == [
            "thumbnail 50%_done"
        ]
        assert len(queries.search_logs(conn, **window, contains="charge", limit=5)) == 5


def test_daily_volume_counts_records_bytes_and_refusals(stored: Engine) -> None:
    with stored.connect() as conn:
        volume = queries.daily_volume(conn, start=NOW - timedelta(days=1), end=NOW)
    by = {(v["day"], v["service"]): v for v in volume}
    today = by[(NOW.date(), "payments")]
    assert today["records"] == 51 and today["refused"] == 0
    assert today["body_bytes"] == sum(len(f"charge {i} ok") for i in range(50)) + 26
    assert by[(NOW.date() - timedelta(days=1), "payments")]["records"] == 1


def _otlp_logs(service: str, count: int) -> bytes:
    nanos = int(datetime.now(UTC).timestamp() * 1e9)
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=nanos + i,
                                severity_number=9,
                                body=AnyValue(string_value=f"line {i}"),
                            )
                            for i in range(count)
                        ]  # fmt: skip
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


def test_the_daily_cap_refuses_and_counts_what_is_over_it(
    api_app: Any, api_server: str, ingest_key: str, engine: Engine
) -> None:
    settings = api_app.state.settings
    api_app.state.settings = dataclasses.replace(settings, log_records_per_service_day=5)
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/x-protobuf"}
    try:
        with httpx.Client(base_url=api_server, headers=headers) as client:
            first = client.post("/v1/logs", content=_otlp_logs("chatty", 3))
            second = client.post("/v1/logs", content=_otlp_logs("chatty", 4))
            third = client.post("/v1/logs", content=_otlp_logs("chatty", 2))
            other = client.post("/v1/logs", content=_otlp_logs("quiet", 2))
            as_json = client.post(
                "/api/monitoring/logs",
                json=[{"service": "chatty", "body": "one more"}],
                headers={"Content-Type": "application/json"},
            )
    finally:
        api_app.state.settings = settings
    assert first.status_code == 200 and other.status_code == 200
    partial = logs_service_pb2.ExportLogsServiceResponse.FromString(second.content)
    assert partial.partial_success.rejected_log_records == 2
    assert "daily cap of 5 log records" in partial.partial_success.error_message
    assert "MONITORING_LOG_RECORDS_PER_SERVICE_DAY" in partial.partial_success.error_message
    assert third.status_code == 429 and int(third.headers["Retry-After"]) > 0
    assert as_json.status_code == 429 and "daily cap of 5" in as_json.text
    with engine.connect() as conn:
        stored = dict(
            conn.execute(text("SELECT service, count(*) FROM log_records GROUP BY 1")).all()
        )
        volume = {
            row.service: (row.records, row.refused)
            for row in conn.execute(text("SELECT service, records, refused FROM log_volume"))
        }
    assert stored == {"chatty": 5, "quiet": 2}
    assert volume == {"chatty": (5, 2 + 2 + 1), "quiet": (2, 0)}
