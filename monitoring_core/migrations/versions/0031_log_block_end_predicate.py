"""log_records: the block_end index's predicate on block_end itself (the GIN search no longer
walks it)

Revision ID: 0031
Revises: 0030

0030's partial index over `block_end` had the predicate `block_trgm IS NOT NULL`, which the
GIN search's own condition (`block_trgm @> codes`, a strict operator) implies: the planner
could then read every summary row of the window through it, detoasting and checking each
block's codes (3.9 s for a rare needle over 10 M records in 24 h, against 0.3 s through the
GIN index). The predicate is now `block_end IS NOT NULL` (the same rows: a block's earliest
row carries both), which the GIN queries do not imply (`logs.queries` compares
`coalesce(block_end, time)` there, not a strict expression of `block_end`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_log_records_block_end", table_name="log_records")
    op.create_index(
        "ix_log_records_block_end",
        "log_records",
        ["block_end"],
        postgresql_where=sa.text("block_end IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_log_records_block_end", table_name="log_records")
    op.create_index(
        "ix_log_records_block_end",
        "log_records",
        ["block_end"],
        postgresql_where=sa.text("block_trgm IS NOT NULL"),
    )
