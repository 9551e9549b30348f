"""alerts: when an instance's data stopped, and whether a rule has ever seen data

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert_instances", sa.Column("no_data_since", sa.DateTime(timezone=True)))
    op.add_column("alert_rules", sa.Column("data_seen_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("alert_rules", "data_seen_at")
    op.drop_column("alert_instances", "no_data_since")
