"""Weekly digests: one row per complete business week, built once and sent through the outbox

Revision ID: 0026
Revises: 0025

`flows.digest` builds the week's summary (uptime per check, incidents with MTTA/MTTR, top error
groups, KPI changes, Saturday performance) when the `digest` setting's day and hour have come;
the primary key on `week_start` makes two workers build it once; the UI offers each week's
Markdown for download.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("week_start", sa.Date(), primary_key=True),  # Monday, business time zone
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", postgresql.JSONB(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("channel_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("digests")
