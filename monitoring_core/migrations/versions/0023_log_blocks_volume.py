"""Log search index without pg_trgm (block trigram summaries) and per-service daily log volume

Revision ID: 0023
Revises: 0022

`log_records` rows are written in blocks (one per ingest batch and day, `logs.store`): every
row carries its `block` id, and the block's earliest row also carries `block_trgm`, the
distinct byte trigrams of the block's bodies (ASCII letters lowered), and `block_end`, its
latest time. A GIN index over `block_trgm` finds the blocks that can hold a substring; only
their rows are read and checked (`logs.trigrams`, `logs.queries`). It lives in the same
partitions, so retention drops it with the rows. `log_volume` counts records, body bytes and
refused records per UTC day and service (the daily cap, `MONITORING_LOG_RECORDS_PER_SERVICE_DAY`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("log_records", sa.Column("block", sa.BigInteger(), nullable=True))
    op.add_column(
        "log_records", sa.Column("block_trgm", postgresql.ARRAY(sa.Integer()), nullable=True)
    )
    op.add_column("log_records", sa.Column("block_end", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_log_records_block", "log_records", ["block"])
    op.create_index(
        "ix_log_records_block_trgm",
        "log_records",
        ["block_trgm"],
        postgresql_using="gin",
        postgresql_where=sa.text("block_trgm IS NOT NULL"),
    )
    op.execute("CREATE SEQUENCE log_block_seq")
    op.create_table(
        "log_volume",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("records", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("body_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refused", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", "service", name=op.f("pk_log_volume")),
    )


def downgrade() -> None:
    op.drop_table("log_volume")
    op.execute("DROP SEQUENCE log_block_seq")
    op.drop_index("ix_log_records_block_trgm", table_name="log_records")
    op.drop_index("ix_log_records_block", table_name="log_records")
    op.drop_column("log_records", "block_end")
    op.drop_column("log_records", "block_trgm")
    op.drop_column("log_records", "block")
