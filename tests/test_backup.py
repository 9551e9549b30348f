"""Backup and restore: a dump taken while writes go on, restored into an empty database, has
the same configuration, the same rows, and the writes up to its snapshot."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url

from monitoring_core.backup import BackupError, backup, restore, table_counts
from monitoring_core.config_io import export_config
from monitoring_core.db import make_engine
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import audit_log
from tests.test_cli import cli
from tests.test_config_io import _seed


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    """A new database on the test server with no tables at all."""
    server = make_url(database_url)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"restore_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        _seed(conn, now)
        points = [MetricPoint("queue_depth", float(i), now, {"q": str(i % 5)}) for i in range(50)]
        store_points(conn, points)


def test_it_restores_what_it_backed_up_while_writes_go_on(
    engine: Engine, database_url: str, empty_database_url: str, now: datetime, tmp_path: Path
) -> None:
    _fill(engine, now)
    stop = threading.Event()

    def keep_writing() -> None:  # the API taking writes while the dump runs
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(insert(audit_log).values(time=now, actor="system:load", action="x"))

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        with engine.connect() as conn:
            before = table_counts(conn)
        done = backup(database_url, tmp_path / "monitoring.dump")
    finally:
        stop.set()
        writer.join()
    assert done.bytes > 0 and not (tmp_path / "monitoring.dump.partial").exists()
    with engine.connect() as conn:
        after = table_counts(conn)
        config, _ = export_config(conn, now=now)

    restore(empty_database_url, done.path)
    restored_engine = make_engine(empty_database_url)
    try:
        with restored_engine.connect() as conn:
            restored = table_counts(conn)
            assert export_config(conn, now=now)[0] == config
            total = conn.execute(select(func.sum(audit_log.c.id))).scalar_one()
            assert total is not None
    finally:
        restored_engine.dispose()
    assert set(restored) == set(after)
    # written while the dump runs: the writer thread above, and the API processes' per-key
    # usage counters (key_usage), which any API in the session may add to once a second
    moving = {"audit_log", "key_usage"}
    assert {k: v for k, v in restored.items() if k not in moving} == {
        k: v for k, v in after.items() if k not in moving
    }
    assert before["audit_log"] <= restored["audit_log"] <= after["audit_log"]
    assert restored["metric_points"] == 50


def test_it_refuses_to_restore_over_a_database_with_tables(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    done = backup(database_url, tmp_path / "b.dump")
    with pytest.raises(BackupError, match="already has .* tables"):
        restore(database_url, done.path)


def test_the_cli_backs_up_and_restores(
    engine: Engine, database_url: str, empty_database_url: str, now: datetime, tmp_path: Path
) -> None:
    _fill(engine, now)
    target = tmp_path / "cli.dump"
    result = cli("backup", str(target), url=database_url)
    assert result.returncode == 0, result.stderr
    assert "backup written to" in result.stdout
    again = cli("restore", str(target), url=database_url)
    assert again.returncode == 1 and "already has" in again.stderr
    loaded = cli("restore", str(target), url=empty_database_url)
    assert loaded.returncode == 0, loaded.stderr
    restored_engine = make_engine(empty_database_url)
    try:
        with restored_engine.connect() as conn, engine.connect() as source:
            assert table_counts(conn) == table_counts(source)
    finally:
        restored_engine.dispose()


def test_the_worker_takes_scheduled_backups_and_keeps_the_newest(
    engine: Engine, now: datetime, tmp_path: Path
) -> None:
    from jobs.backups import scheduled_backup
    from monitoring_core.config_io.settings_rows import save_setting

    assert scheduled_backup(engine, now).startswith("off")
    schedule = {"directory": str(tmp_path / "b"), "every_hours": 24, "keep": 2}
    with engine.begin() as conn:
        save_setting(
            conn, key="backup_schedule", value=schedule, actor="user:ann", role="admin", now=now
        )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "monitoring-keep-me.dump").write_text("not ours")
    first = scheduled_backup(engine, now)
    assert first.startswith("monitoring-") and "bytes" in first
    assert scheduled_backup(engine, now + timedelta(hours=23)).startswith("not due")
    scheduled_backup(engine, now + timedelta(hours=24))
    scheduled_backup(engine, now + timedelta(hours=48))
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    stamp = [
        (now + timedelta(hours=h)).strftime("monitoring-%Y%m%dT%H%M%SZ.dump") for h in (24, 48)
    ]
    assert names == sorted([*stamp, "monitoring-keep-me.dump"])  # oldest gone, stranger kept


def test_it_refuses_a_bad_schedule() -> None:
    from monitoring_core.backup import parse_schedule

    for bad in ({"directory": "relative"}, {"directory": "/x", "keep": 0}, {"dir": "/x"}, []):
        with pytest.raises(ValueError):
            parse_schedule(bad)
    assert parse_schedule({"directory": "/x"}).every_hours == 24
