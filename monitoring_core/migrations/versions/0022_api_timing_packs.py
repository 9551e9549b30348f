"""api_timing_packs: API timings older than a day, packed column-wise per half hour and key

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_timing_packs",
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        # microseconds after start_time (a half hour is 1.8e9 us: fits int4)
        sa.Column("offsets", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("durations", postgresql.ARRAY(sa.Float(precision=53)), nullable=False),
        # the optional columns, NULL when every request of the pack had none
        sa.Column("user_types", postgresql.ARRAY(sa.Text())),
        sa.Column("db_ms", postgresql.ARRAY(sa.Float(precision=53))),
        sa.Column("external_ms", postgresql.ARRAY(sa.Float(precision=53))),
        sa.Column("cache_hits", postgresql.ARRAY(sa.Boolean())),
        sa.Column("request_ids", postgresql.ARRAY(sa.Text())),
        sa.Column(
            "packed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        # a late request packed after its half hour was gives a second pack of the same key
        sa.PrimaryKeyConstraint(
            "start_time",
            "method",
            "endpoint",
            "status_code",
            "packed_at",
            name=op.f("pk_api_timing_packs"),
        ),
    )
    # Packs are written once (rewritten whole when late requests merge in): pack pages full.
    op.execute("ALTER TABLE api_timing_packs SET (fillfactor = 100)")


def downgrade() -> None:
    op.drop_table("api_timing_packs")
