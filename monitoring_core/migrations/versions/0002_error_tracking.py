"""error tracking: group members, event-id dedup, group history

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "error_group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["error_groups.id"],
            name=op.f("fk_error_group_members_group_id_error_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "kind", "value", name=op.f("pk_error_group_members")),
    )
    op.create_table(
        "error_event_ids",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_error_event_ids")),
    )
    op.create_index(
        "ix_error_event_ids_time", "error_event_ids", ["time"], postgresql_using="brin"
    )
    op.create_table(
        "error_group_changes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("release", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["error_groups.id"],
            name=op.f("fk_error_group_changes_group_id_error_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_error_group_changes")),
    )
    op.create_index("ix_error_group_changes_time", "error_group_changes", ["time"])
    op.create_index(
        "ix_error_group_changes_group_time", "error_group_changes", ["group_id", "time"]
    )


def downgrade() -> None:
    op.drop_table("error_group_changes")
    op.drop_table("error_event_ids")
    op.drop_table("error_group_members")
