"""Migrations, partitions and retention on a real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from monitoring_core.migrate import alembic_config, migrate
from monitoring_core.partitions import (
    drop_partitions_before,
    ensure_partitions,
    list_partitions,
    partition_name,
)
from monitoring_core.schema import PARTITIONED_TABLES, metadata


def test_it_creates_every_table_of_the_model(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names


def test_it_migrates_idempotently(engine: Engine, now: datetime) -> None:
    migrate(engine, now=now)
    migrate(engine, now=now)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_it_has_partitions_around_today(engine: Engine, now: datetime) -> None:
    with engine.connect() as conn:
        for table in PARTITIONED_TABLES:
            days = list_partitions(conn, table)
            assert now.date() in days
            assert (now + timedelta(days=3)).date() in days


def test_it_creates_and_drops_partitions(engine: Engine) -> None:
    old = datetime(2020, 1, 10, 12, tzinfo=UTC)
    with engine.begin() as conn:
        created = ensure_partitions(
            conn, start=old, end=old + timedelta(days=2), tables=("metric_points",)
        )
        assert created == [
            partition_name("metric_points", (old + timedelta(days=i)).date()) for i in range(3)
        ]
        assert ensure_partitions(conn, start=old, end=old, tables=("metric_points",)) == []
        conn.execute(
            text("INSERT INTO metric_points (time, series_id, value) VALUES (:t, 1, 1.0)"),
            {"t": old + timedelta(days=1)},
        )
        dropped = drop_partitions_before(conn, "metric_points", datetime(2020, 1, 12, tzinfo=UTC))
        assert dropped == ["metric_points_p20200110", "metric_points_p20200111"]
        # The point lived in a dropped partition: retention removed it without DELETE.
        assert (
            conn.execute(
                text("SELECT count(*) FROM metric_points WHERE time < '2020-02-01'")
            ).scalar()
            == 0
        )
        assert datetime(2020, 1, 12).date() in list_partitions(conn, "metric_points")
        drop_partitions_before(conn, "metric_points", datetime(2020, 1, 13, tzinfo=UTC))


def test_it_refuses_a_point_without_a_partition(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text("INSERT INTO metric_points (time, series_id, value) VALUES ('1999-01-01Z', 1, 1)")
        )
