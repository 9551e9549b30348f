"""metric_stale_markers: Prometheus staleness markers received by remote write

Revision ID: 0025
Revises: 0024

A staleness marker (the NaN 0x7ff0000000000002 Prometheus writes when a series disappears
from a scrape) ends the series at that instant for PromQL's instant selectors. The metric
store holds finite values only, so the markers live here: one row per series and instant,
deleted with their series and, per series, once older than the raw points they shadow
(`prometheus.staleness`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_stale_markers",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["metric_series.id"],
            name=op.f("fk_metric_stale_markers_series_id_metric_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_id", "time", name=op.f("pk_metric_stale_markers")),
    )


def downgrade() -> None:
    op.drop_table("metric_stale_markers")
