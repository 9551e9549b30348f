"""Storage figures (monitoring_core.storage): bytes per sample per table, size per tier,
compaction lag, ingest rate and the projected year; the same in /metrics; the Health page's
Storage section shows them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.compaction import compact, pack_api_timings
from monitoring_core.metrics_query import query_metric
from monitoring_core.performance.queries import endpoint_table, latency_trend
from monitoring_core.retention import DEFAULT_RETENTION_DAYS
from monitoring_core.rollups import FAMILIES, _merge_select, _upsert, run_rollups
from monitoring_core.storage import (
    TIERS,
    StorageFigures,
    TableFigure,
    project_year,
    storage_figures,
)
from monitoring_core.timerange import TimeRange
from tests.rollup_fixtures import add_points, add_series, add_timings, random_timings


def _figure(table: str, size: int, samples: int) -> TableFigure:
    tier = next(t for t, members in TIERS.items() if table in dict(members))
    return TableFigure(table, tier, "x", size, samples)


def test_project_year_multiplies_rate_days_and_bytes() -> None:
    days = dict(DEFAULT_RETENTION_DAYS)  # chunks 30 d, api timings 14 d, 1m 90 d, 1h/6h 395
    tables = [
        _figure("metric_points", 100, 1),  # 100 B per point as rows
        _figure("metric_chunks", 3, 1),
        _figure("api_timings", 90, 1),
        _figure("api_timing_packs", 15, 1),
        *(_figure(f"metric_rollup_{s}", 80, 1) for s in ("1m", "1h", "6h", "1d")),
        *(_figure(f"api_rollup_{s}", 120, 1) for s in ("1m", "1h", "6h", "1d")),
        *(_figure(f"api_total_{s}", 100, 1) for s in ("1m", "1h", "6h", "1d")),
    ]
    figures = StorageFigures(tables, 10.0, 2.0, 5, 3, 7200.0, 86400.0)
    total, unmeasured = project_year(figures, days)
    day = 86_400
    expected = (
        10 * day * 100
        + 10 * day * 29 * 3
        + 2 * day * 90
        + 2 * day * 13 * 15
        + 5 * 80 * (1440 * 90 + 24 * 365 + 4 * 365 + 365)
        + (3 * 120 + 100) * (1440 * 90 + 24 * 365 + 4 * 365 + 365)
    )
    assert unmeasured == [] and total == expected
    # no chunk measured yet: that part is named and left out, not guessed
    tables[1] = _figure("metric_chunks", 0, 0)
    total, unmeasured = project_year(figures, days)
    assert unmeasured == ["metric_chunks"] and total == expected - 10 * day * 29 * 3


def test_figures_of_a_database_with_chunks_packs_and_rollups(
    engine: Engine,
    now: datetime,
    api_server: str,
    admin_key: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(5)
    with engine.begin() as conn:
        ids = [add_series(conn, f"storage_{i}") for i in range(3)]
        start = now - timedelta(hours=30)
        for sid in ids:
            points = [(start + timedelta(seconds=15 * k), float(k)) for k in range(30 * 240)]
            add_points(conn, sid, points, ingested_at=start)
        conn.execute(
            text(
                "INSERT INTO api_timings (time, method, endpoint, status_code, "
                "response_time_ms, ingested_at) SELECT :t - make_interval(secs => g * 9.0), "
                "'GET', '/api/x', 200, :ms * g, :t - make_interval(secs => g * 9.0) "
                "FROM generate_series(1, 12000) g"
            ),
            {"t": now - timedelta(minutes=1), "ms": rng.random()},
        )
    run_rollups(engine, now, safety_lag=timedelta(0))
    compact(engine, now)
    pack_api_timings(engine, now)
    with engine.connect() as conn:
        for table in ("metric_points", "api_timings", "metric_rollup_1m", "api_rollup_1m"):
            conn.execute(text(f"ANALYZE {table}"))  # as autovacuum would: counts are statistics
        figures = storage_figures(conn, now)
    assert {t.table for t in figures.tables} == {t for m in TIERS.values() for t, _ in m}
    chunks, rows = figures.table("metric_chunks"), figures.table("metric_points")
    assert chunks.samples == 3 * 30 * 240 - rows.samples and chunks.bytes > 0
    assert figures.table("api_timing_packs").samples + figures.table("api_timings").samples == (
        12000
    )
    # the last complete hour before now - 5 min: 3 series at 4 points a minute, 400 requests
    assert figures.metric_series == 3
    assert abs(figures.metric_points_per_s - 3 * 240 / 3600) < 1e-9
    assert figures.api_keys == 1 and abs(figures.api_requests_per_s - 400 / 3600) < 1e-9
    assert figures.chunk_lag_s is not None and 2 * 3600 <= figures.chunk_lag_s <= 4 * 3600
    assert figures.year_bytes > 0 and sum(figures.tier_bytes().values()) > 0

    body = httpx.get(f"{api_server}/metrics", headers={"X-API-Key": admin_key}).text
    assert 'monitoring_storage_bytes_per_sample{table="metric_chunks",unit="point"}' in body
    assert 'monitoring_storage_tier_bytes{tier="chunks and packs"}' in body
    assert 'monitoring_storage_compaction_lag_seconds{form="metric_chunks"}' in body
    assert "monitoring_storage_projected_year_bytes " in body

    monkeypatch.setenv("DATABASE_URL", database_url)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_string(_SECTION, default_timeout=30)
    at.session_state["now"] = now
    with clock.frozen(now):
        at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Storage"]
    assert {m.label for m in at.metric} == {
        "On disk",
        "A year at this rate",
        "Compaction lag",
        "Points per second",
    }
    tables = [d.value for d in at.dataframe]
    assert "metric_chunks" in set(tables[1]["table"])
    assert "B/point" in tables[1].set_index("table").loc["metric_chunks", "bytes per sample"]


_SECTION = """
import streamlit as st
from ui import storage_section
storage_section.render(st.session_state["now"])
"""


def test_rollup_readers_answer_the_same_with_empty_counts(engine: Engine, now: datetime) -> None:
    """1-minute rows store an empty hist_counts for "one per key": every reader and the merge
    into hours gives the same answer as with the explicit ones it replaced."""
    start = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(9)
    with engine.begin() as conn:
        add_timings(conn, random_timings(start, minutes=120, per_minute=20, seed=4))
        sid = add_series(conn, "storage_gauge", {"host": "a"})
        points = [(start + timedelta(seconds=15 * k), rng.gauss(50, 9)) for k in range(480)]
        add_points(conn, sid, points, ingested_at=start)
    run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))  # rows stamped now()
    tr = TimeRange(start, start + timedelta(hours=2))
    fam = FAMILIES[1]
    hour_sql = text(_upsert("api_rollup_1h", fam.keys, fam, _merge_select(fam, fam.stages[1])))

    def answers() -> list[Any]:
        with engine.begin() as conn:
            empty = conn.execute(
                text("SELECT count(*) FROM api_rollup_1m WHERE hist_counts = '{}'")
            ).scalar()
            conn.execute(hour_sql, {"lo": tr.start, "hi": tr.end})
            hours = conn.execute(
                text("SELECT * FROM api_rollup_1h ORDER BY bucket, method, endpoint")
            ).all()
            return [
                empty,
                endpoint_table(conn, tr),
                latency_trend(conn, tr, "5m"),
                query_metric(conn, metric_name="storage_gauge", aggregation="p95",
                             interval="10m", tr=tr),
                hours,
            ]  # fmt: skip

    packed = answers()
    with engine.begin() as conn:
        for table in ("api_rollup_1m", "metric_rollup_1m"):
            conn.execute(
                text(
                    f"UPDATE {table} SET hist_counts = "  # noqa: S608 (our table names)
                    "array_fill(1::bigint, ARRAY[cardinality(hist_keys)]) WHERE hist_counts = '{}'"
                )
            )
    explicit = answers()
    assert packed[0] > 100 and explicit[0] == 0  # the rows were stored with empty counts
    for mine, theirs in zip(packed[1:4], explicit[1:4], strict=True):
        pd.testing.assert_frame_equal(mine, theirs)
    assert len(packed[4]) == len(explicit[4]) == 6
    for mine, theirs in zip(packed[4], explicit[4], strict=True):  # hours merged from minutes
        row, other = mine._asdict(), theirs._asdict()
        assert row.pop("sum") == pytest.approx(other.pop("sum")) and row == other
