"""rollups: daily rollups and all-endpoint totals, so 30-day reads merge ~30 rows per series

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _hist() -> list[sa.Column]:
    return [
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("hist_keys", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("hist_counts", postgresql.ARRAY(sa.BigInteger()), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "metric_rollup_1d",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        *_hist(),
        sa.Column("last", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name="pk_metric_rollup_1d"),
    )
    op.create_index("ix_metric_rollup_1d_bucket", "metric_rollup_1d", ["bucket"])
    op.create_table(
        "api_rollup_1d",
        sa.Column("bucket", TS, nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        *_hist(),
        sa.PrimaryKeyConstraint("bucket", "method", "endpoint", name="pk_api_rollup_1d"),
    )
    for unit in ("1m", "1h", "1d"):
        op.create_table(
            f"api_total_{unit}",
            sa.Column("bucket", TS, nullable=False),
            sa.Column("error_count", sa.BigInteger(), nullable=False),
            sa.Column("client_error_count", sa.BigInteger(), nullable=False),
            *_hist(),
            sa.PrimaryKeyConstraint("bucket", name=f"pk_api_total_{unit}"),
        )
    op.create_table(
        "web_vitals_rollup_1d",
        sa.Column("bucket", TS, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("page_route", sa.Text(), nullable=False),
        sa.Column("device_type", sa.Text(), nullable=False),
        sa.Column("good", sa.BigInteger(), nullable=False),
        sa.Column("needs_improvement", sa.BigInteger(), nullable=False),
        sa.Column("poor", sa.BigInteger(), nullable=False),
        *_hist(),
        sa.PrimaryKeyConstraint(
            "bucket", "name", "page_route", "device_type", name="pk_web_vitals_rollup_1d"
        ),
    )
    # Rows already rolled up hourly get their daily/total rows on the next full recompute:
    # reset the watermarks so the worker rebuilds every level from the raw rows still kept.
    op.execute("DELETE FROM rollup_watermarks")


def downgrade() -> None:
    for table in (
        "web_vitals_rollup_1d",
        "api_total_1d",
        "api_total_1h",
        "api_total_1m",
        "api_rollup_1d",
        "metric_rollup_1d",
    ):
        op.drop_table(table)
