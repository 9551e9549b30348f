"""OpenTelemetry: spans and log records (partitioned by day), OTLP cumulative-sum state

Revision ID: 0015
Revises: 0014

`pg_trgm` (a trusted contrib extension) backs substring search on log bodies where the server
has it; the embedded Postgres of `pgserver` ships without contrib, and there the index is
left out (searches then scan the time window's partitions).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _jsonb(name: str, default: str = "'{}'::jsonb") -> sa.Column:
    return sa.Column(
        name,
        postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text(default),
        nullable=False,
    )


def _ts(name: str, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "spans",
        _ts("time"),
        sa.Column("trace_id", sa.Text(), nullable=False),
        sa.Column("span_id", sa.Text(), nullable=False),
        sa.Column("parent_span_id", sa.Text(), nullable=True),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        _jsonb("attributes"),
        _jsonb("events", "'[]'::jsonb"),
        _jsonb("resource"),
        sa.Column("scope", sa.Text(), nullable=True),
        _ts("ingested_at", now=True),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index("ix_spans_time", "spans", ["time"], postgresql_using="brin")
    op.create_index("ix_spans_trace_id", "spans", ["trace_id"])
    op.create_index("ix_spans_service_time", "spans", ["service", "time"])
    op.create_table(
        "log_records",
        _ts("time"),
        sa.Column("severity_number", sa.SmallInteger(), nullable=False),
        sa.Column("severity_text", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.Text(), nullable=True),
        sa.Column("span_id", sa.Text(), nullable=True),
        sa.Column("service", sa.Text(), nullable=False),
        _jsonb("attributes"),
        _jsonb("resource"),
        _ts("ingested_at", now=True),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index("ix_log_records_time", "log_records", ["time"], postgresql_using="brin")
    op.create_index("ix_log_records_trace_id", "log_records", ["trace_id"])
    op.create_index(
        "ix_log_records_service_severity_time",
        "log_records",
        ["service", "severity_number", "time"],
    )
    op.execute(
        """
        DO $$
        BEGIN
            BEGIN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'pg_trgm not available: log body search runs without an index';
            END;
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                EXECUTE 'CREATE INDEX ix_log_records_body_trgm ON log_records '
                        'USING gin (body gin_trgm_ops)';
            END IF;
        END $$;
        """
    )
    op.create_table(
        "otlp_cumulative",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        _ts("time"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_otlp_cumulative")),
    )


def downgrade() -> None:
    op.drop_table("otlp_cumulative")
    op.drop_table("log_records")
    op.drop_table("spans")
