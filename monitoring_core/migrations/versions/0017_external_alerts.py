"""alert_instances.external_ends_at: when an alert received from Prometheus/Grafana ends

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An Alertmanager alert carries endsAt: the sender re-sends a firing alert before then,
    # and an alert not re-sent by then is resolved (flows/external_alerts.expire_external).
    op.add_column("alert_instances", sa.Column("external_ends_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_alert_instances_external_ends_at",
        "alert_instances",
        ["external_ends_at"],
        postgresql_where=sa.text("external_ends_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_alert_instances_external_ends_at", table_name="alert_instances")
    op.drop_column("alert_instances", "external_ends_at")
