"""people and on-call: contact methods, time zones, schedules, layers, overrides, default routes

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_SEVERITIES = "('critical','high','medium','low','info')"


def _created() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


def upgrade() -> None:
    op.add_column("users", sa.Column("time_zone", sa.Text(), nullable=True))
    # A contact method is a notification channel owned by a person: delivery, masking, the
    # outbound policy and the delivery log apply to it unchanged.
    op.add_column(
        "notification_channels",
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "users.id", ondelete="CASCADE", name=op.f("fk_notification_channels_user_id_users")
            ),
            nullable=True,
        ),
    )
    op.create_index("ix_notification_channels_user_id", "notification_channels", ["user_id"])
    op.create_table(
        "oncall_schedules",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        _created(),
    )
    op.create_table(
        "oncall_layers",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "schedule_id",
            sa.BigInteger(),
            sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=False, server_default=""),
        sa.Column("level", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("rotation", sa.Text(), nullable=False),
        sa.Column("handoff_time", sa.Time(), nullable=False, server_default="09:00"),
        sa.Column("handoff_weekday", sa.SmallInteger(), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("members", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        # weekdays (0 = Monday) in the business time zone the layer covers; empty: every day
        sa.Column(
            "active_days",
            postgresql.ARRAY(sa.SmallInteger()),
            nullable=False,
            server_default=sa.text("'{}'::smallint[]"),
        ),
        _created(),
        sa.CheckConstraint(
            "rotation IN ('daily','weekly')", name=op.f("ck_oncall_layers_rotation_valid")
        ),
        sa.CheckConstraint(
            "handoff_weekday IS NULL OR handoff_weekday BETWEEN 0 AND 6",
            name=op.f("ck_oncall_layers_weekday_valid"),
        ),
    )
    op.create_index("ix_oncall_layers_schedule_id", "oncall_layers", ["schedule_id"])
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "schedule_id",
            sa.BigInteger(),
            sa.ForeignKey("oncall_schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_by", sa.Text(), nullable=False),
        _created(),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_oncall_overrides_span_valid")),
    )
    op.create_index(
        "ix_oncall_overrides_schedule_end", "oncall_overrides", ["schedule_id", "ends_at"]
    )
    op.create_table(
        "notification_routes",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("min_severity", sa.Text(), nullable=False, unique=True),
        # {"channels": [ids], "users": [ids], "schedules": [ids]}
        sa.Column(
            "targets",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        _created(),
        sa.CheckConstraint(
            f"min_severity IN {_SEVERITIES}", name=op.f("ck_notification_routes_severity_valid")
        ),
    )


def downgrade() -> None:
    op.drop_table("notification_routes")
    op.drop_table("oncall_overrides")
    op.drop_table("oncall_layers")
    op.drop_table("oncall_schedules")
    op.drop_index("ix_notification_channels_user_id", "notification_channels")
    op.drop_column("notification_channels", "user_id")
    op.drop_column("users", "time_zone")
