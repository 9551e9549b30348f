"""Alembic environment: the URL comes from the caller (monitoring_core.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from monitoring_core.schema import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
