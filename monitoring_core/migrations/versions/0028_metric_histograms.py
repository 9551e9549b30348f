"""metric_histograms: OTLP histogram points (raw, partitioned by day) and their cumulative state

Revision ID: 0028
Revises: 0027

An OTLP histogram or exponential-histogram data point becomes one row here: its buckets
spread over the mergeable log buckets of `histogram.py` (`hist_keys`, `hist_counts`), with
count, sum, min and max. The metric rollup folds these rows into the 1-minute rows of their
series (rollups.py), so p50/p95/p99 of an OTLP histogram metric are read like any other.
`otlp_cumulative.buckets` keeps the previous cumulative point's buckets of a series, for
the deltas.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_histograms",
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("hist_keys", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("hist_counts", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column(
            "ingested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index(
        "ix_metric_histograms_series_id_time", "metric_histograms", ["series_id", "time"]
    )
    op.create_index(
        "ix_metric_histograms_ingested_at",
        "metric_histograms",
        ["ingested_at"],
        postgresql_using="brin",
    )
    op.add_column(
        "otlp_cumulative",
        sa.Column("buckets", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("otlp_cumulative", "buckets")
    op.drop_table("metric_histograms")
