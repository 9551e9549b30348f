"""Resources: real CPU, memory, disk, network and Postgres figures, and the Resources page."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import psutil
import pytest
from sqlalchemy import Engine, create_engine, select, text
from streamlit.testing.v1 import AppTest

from jobs import collectors as collector_jobs
from monitoring_core.collectors.database import DatabaseCollector, cache_hit_ratio
from monitoring_core.collectors.runner import run_collector
from monitoring_core.collectors.system import SystemCollector, cpu_busy_percent
from monitoring_core.enums import Role
from monitoring_core.rollups import run_rollups
from monitoring_core.schema import metric_points, metric_series

AppFactory = Callable[[Role | None], AppTest]
NOW = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)


def _burn(seconds: float) -> None:
    """Busy-work of bounded length: the CPU this test then expects to see measured."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(i * i for i in range(2_000))


def _stored(engine: Engine, name: str) -> list[float]:
    query = (
        select(metric_points.c.value)
        .join(metric_series, metric_series.c.id == metric_points.c.series_id)
        .where(metric_series.c.name == name)
        .order_by(metric_points.c.time)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


@pytest.fixture
def fresh_job_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worker process's collector state, as a new worker process starts with it."""
    monkeypatch.setattr(collector_jobs, "_state", {})
    yield


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"user": 0, "system": 0, "idle": 0}, {"user": 1, "system": 1, "idle": 2}, 50.0),
        ({"user": 0, "idle": 0, "iowait": 0}, {"user": 1, "idle": 2, "iowait": 1}, 25.0),
        # guest time is inside user already: counted once, not twice
        ({"user": 0, "idle": 0, "guest": 0}, {"user": 2, "idle": 2, "guest": 2}, 50.0),
        ({"user": 0, "idle": 0}, {"user": 0, "idle": 4}, 0.0),
        ({"user": 0, "idle": 0}, {"user": 0.1, "idle": 0.1}, None),  # too short a window
    ],
)
def test_it_computes_cpu_busy_from_two_samples(
    before: dict, after: dict, expected: float | None
) -> None:
    assert cpu_busy_percent(SimpleNamespace(**before), SimpleNamespace(**after)) == expected


def test_it_asks_more_cpu_time_of_more_cores_for_a_window() -> None:
    before, after = SimpleNamespace(user=0, idle=0), SimpleNamespace(user=1, idle=1)
    assert cpu_busy_percent(before, after, cpus=4) == 50.0  # 0.5 s of wall time
    assert cpu_busy_percent(before, after, cpus=16) is None  # 0.125 s: too coarse


def test_it_reads_a_real_nonzero_cpu_figure_under_load(
    engine: Engine, fresh_job_state: None
) -> None:
    collector_jobs.collect_system(engine, NOW)  # the worker's first run: baseline only
    reference = psutil.cpu_times()
    _burn(1.0)
    collector_jobs.collect_system(engine, NOW + timedelta(seconds=30))

    expected = cpu_busy_percent(reference, psutil.cpu_times())
    cpu = _stored(engine, "system_cpu_percent")
    assert len(cpu) == 1, cpu  # no reading over a window of microseconds
    assert 0 < cpu[0] <= 100
    # The same window measured independently: a baseline reset would read 0.0 or 100.0 here.
    assert expected is not None and abs(cpu[0] - expected) <= 15


def test_it_keeps_one_system_collector_per_worker_process(
    engine: Engine, fresh_job_state: None
) -> None:
    collector_jobs.collect_system(engine, NOW)
    first = collector_jobs._state["system"]
    collector_jobs.collect_system(engine, NOW + timedelta(seconds=30))
    assert collector_jobs._state["system"] is first


def test_it_measures_memory_disk_and_network(now: datetime) -> None:
    collector = SystemCollector()
    collector.collect(now)
    _burn(0.5)
    points = collector.collect(now + timedelta(seconds=30))
    values: dict[str, list[float]] = {}
    for p in points:
        values.setdefault(p.name, []).append(p.value)
    assert 0 < values["system_memory_used_percent"][0] <= 100
    assert values["system_memory_available_bytes"][0] > 0
    assert all(0 <= v <= 100 for v in values["system_disk_used_percent"])
    assert all(v >= 0 for v in values.get("system_network_received_bytes_per_second", []))
    assert 0 < values["system_cpu_percent"][0] <= 100


def test_it_reads_connections_cache_hit_and_lock_waits_from_postgres(
    engine: Engine, database_url: str, now: datetime
) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO settings (key, value) VALUES ('lockme', '1')"))
    holder, waiter = create_engine(database_url), create_engine(database_url)
    row_lock = text("SELECT value FROM settings WHERE key = 'lockme' FOR UPDATE")

    def wait_for_the_row() -> None:
        with waiter.connect() as conn:
            conn.execute(text("SET lock_timeout = '10s'"))
            conn.execute(row_lock)

    try:
        with holder.connect() as conn:
            conn.execute(row_lock)
            thread = threading.Thread(target=wait_for_the_row)
            thread.start()
            points = _until_a_session_waits(engine, now)
            conn.rollback()  # lets the waiter through
        thread.join(10)
    finally:
        holder.dispose()
        waiter.dispose()
    by_name = {p.name: p.value for p in points}
    assert by_name["db_connections"] >= 2  # the holder and the waiter at least
    assert 0 <= by_name["db_cache_hit_ratio_since_reset"] <= 1
    assert by_name["db_locks"] >= 1
    assert by_name["db_sessions_waiting_for_lock"] == 1


@pytest.mark.parametrize(
    ("before", "after", "ratio"),
    [
        (None, (100, 10), None),  # the first run has no interval
        ((100, 10), (190, 20), 0.9),
        ((100, 10), (100, 10), None),  # nothing read in between
        ((100, 10), (5, 1), None),  # statistics were reset
    ],
)
def test_it_computes_the_cache_hit_ratio_between_two_runs(
    before: tuple[int, int] | None, after: tuple[int, int], ratio: float | None
) -> None:
    assert cache_hit_ratio(before, after) == ratio


def test_it_reads_the_cache_hit_ratio_of_the_last_interval(engine: Engine, now: datetime) -> None:
    collector = DatabaseCollector(engine)
    assert "db_cache_hit_ratio" not in {p.name for p in collector.collect(now)}
    deadline = time.monotonic() + 15
    ratio = None
    while ratio is None:  # Postgres publishes block counters about once a second
        assert time.monotonic() < deadline, "the block counters never moved"
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM metric_series"))
        found = [p.value for p in collector.collect(now) if p.name == "db_cache_hit_ratio"]
        ratio = found[0] if found else None
        time.sleep(0.1)
    assert 0 <= ratio <= 1


def _until_a_session_waits(engine: Engine, now: datetime) -> list:
    """Collect until the waiter shows as waiting (it needs a moment to reach the lock)."""
    collector = DatabaseCollector(engine)
    for _ in range(200):
        points = collector.collect(now)
        if any(p.name == "db_sessions_waiting_for_lock" and p.value >= 1 for p in points):
            return points
    return points


def test_it_fails_fast_instead_of_hanging_on_an_exclusively_locked_table(
    engine: Engine, database_url: str, now: datetime
) -> None:
    holder = create_engine(database_url)
    try:
        with holder.connect() as conn:
            conn.execute(text("LOCK TABLE settings IN ACCESS EXCLUSIVE MODE"))
            started = time.perf_counter()
            run = run_collector(engine, DatabaseCollector(engine, lock_timeout_s=0.2), now)
            took = time.perf_counter() - started
            conn.rollback()
    finally:
        holder.dispose()
    assert not run.ok and "lock timeout" in (run.error or "")
    assert took < 5


# ---------------------------------------------------------------- the Resources page
def _collect_history(engine: Engine, now: datetime) -> None:
    """Real system and database readings at a few minutes before `now`, rolled up."""
    system, database = SystemCollector(), DatabaseCollector(engine)
    for minutes_ago in (20, 10, 2):
        _burn(0.3)  # a CPU window worth measuring between two readings
        at = now - timedelta(minutes=minutes_ago)
        assert run_collector(engine, system, at).ok
        assert run_collector(engine, database, at).ok
    run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))  # by ingestion time


def _chart_titles(at: AppTest) -> list[str]:
    return [m.value.strip("*").split("*")[0] for m in at.markdown if m.value.startswith("**")]


def test_it_draws_host_and_database_charts_over_the_time_range(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _collect_history(engine, now)
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/resources.py").run()

    assert not at.exception
    assert [t.value for t in at.title] == ["Resources"]
    charts = at.get("vega_lite_chart")
    assert {"CPU busy", "Memory used", "Disk used"} <= set(_chart_titles(at))
    assert len(charts) == len(at.text) >= 5 and not at.info  # one "Latest" line per chart
    assert "Latest: " in " ".join(t.value for t in at.text)
    at.sidebar.segmented_control(key="time_range").set_value("1h").run()
    assert not at.exception and len(at.get("vega_lite_chart")) == len(charts)
    at.segmented_control(key="resources_section").set_value("Database").run()  # the other one
    assert not at.exception and at.query_params["section"] == "database"
    assert {"Connections", "Cache hit ratio"} <= set(_chart_titles(at))
    assert len(at.get("vega_lite_chart")) == len(at.text) >= 5 and not at.info


def test_it_says_where_resource_figures_come_from_when_there_are_none(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/resources.py").run()
    assert not at.exception
    assert not at.get("vega_lite_chart")
    assert "collect_system" in " ".join(i.value for i in at.info)
    at.segmented_control(key="resources_section").set_value("Database").run()
    assert not at.get("vega_lite_chart")
    assert "collect_database" in " ".join(i.value for i in at.info)


def test_a_series_of_one_or_two_points_is_drawn_as_dots() -> None:
    """A worker that started minutes ago has one bucket per series at 24 h: a line alone
    would draw nothing, so the chart draws the points too (and only then)."""
    import pandas as pd

    from ui.resource_charts import line_spec, sparse

    t = pd.to_datetime(["2026-06-06 10:00", "2026-06-06 10:01", "2026-06-06 10:02"], utc=True)
    few = pd.DataFrame({"time": t[:1], "series": ["vm"], "value": [80.6]})
    many = pd.DataFrame({"time": t, "series": ["vm"] * 3, "value": [1.0, 2.0, 3.0]})
    assert sparse(few) and not sparse(many) and not sparse(many.iloc[:0])
    assert line_spec("%", dots=sparse(few))["layer"][0]["mark"]["point"] is True
    assert line_spec("%", dots=sparse(many))["layer"][0]["mark"]["point"] is False


def test_a_resource_chart_spans_the_whole_range_however_few_its_points() -> None:
    """A worker that started minutes ago has one point: the x axis still covers the range
    picked (it drew one dot in the middle of the chart), on the wall clock the points use."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from ui.resource_charts import line_spec, wall_span

    london = ZoneInfo("Europe/London")
    span = wall_span(datetime(2026, 6, 5, 9, 0, tzinfo=UTC), datetime(2026, 6, 6, 9, 0, tzinfo=UTC),
                     london)  # fmt: skip
    assert span == (datetime(2026, 6, 5, 10, 0), datetime(2026, 6, 6, 10, 0))  # BST
    domain = line_spec("%", span=span)["encoding"]["x"]["scale"]["domain"]
    # DateTime objects on the UTC scale (plain milliseconds put every point at the left edge)
    assert domain == [
        {"year": 2026, "month": 6, "date": day, "hours": 10, "minutes": 0, "seconds": 0,
         "utc": True}
        for day in (5, 6)
    ]  # fmt: skip
    assert "domain" not in line_spec("%")["encoding"]["x"]["scale"]
