"""metric_chunks: compressed series chunks holding compacted raw metric points

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_chunks",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("times", sa.LargeBinary(), nullable=False),
        sa.Column("vals", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "start_time", name=op.f("pk_metric_chunks")),
    )
    op.create_index("ix_metric_chunks_end_time", "metric_chunks", ["end_time"])
    # Chunks are written once and never updated in place: pack pages full.
    op.execute("ALTER TABLE metric_chunks SET (fillfactor = 100)")
    # The byte strings are zstd output already: keep them inline, uncompressed by TOAST.
    op.execute("ALTER TABLE metric_chunks ALTER COLUMN times SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE metric_chunks ALTER COLUMN vals SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("metric_chunks")
