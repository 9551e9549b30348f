"""health: ping log (no bodies: size and hash only) and pause/resume of checks

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("health_checks", sa.Column("paused_at", sa.DateTime(timezone=True)))
    op.add_column("health_checks", sa.Column("resumed_at", sa.DateTime(timezone=True)))
    op.create_table(
        "health_check_pings",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("check_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("exit_status", sa.SmallInteger(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("body_bytes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("body_sha256", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('success','fail','start')", name=op.f("ck_health_check_pings_kind_valid")
        ),
        sa.ForeignKeyConstraint(
            ["check_id"],
            ["health_checks.id"],
            name=op.f("fk_health_check_pings_check_id_health_checks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_check_pings")),
    )
    op.create_index("ix_health_check_pings_check_time", "health_check_pings", ["check_id", "time"])


def downgrade() -> None:
    op.drop_table("health_check_pings")
    op.drop_column("health_checks", "resumed_at")
    op.drop_column("health_checks", "paused_at")
