"""rollups: BRIN index on metric_points.time so recomputing touched minutes reads only them

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_metric_points_time", "metric_points", ["time"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_metric_points_time", table_name="metric_points")
