"""audit: every stored "who" as user:NAME, apikey:NAME or system:JOB (monitoring_core/audit.py)

Rows written before were mixed: pages wrote `ann` or `user:ann`, the error routes
`api-key:NAME`, the worker bare job names (`escalation`, `auto-recovery`, …). Bare job names
become `system:JOB`, `api-key:` becomes `apikey:`, any other bare name was a UI user.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column) pairs that name who acted.
ACTOR_COLUMNS = (
    ("audit_log", "actor"),
    ("alert_events", "actor"),
    ("incident_timeline", "actor"),
    ("error_group_changes", "actor"),
    ("alert_instances", "acknowledged_by"),
    ("alert_rules", "created_by"),
    ("silences", "created_by"),
    ("incidents", "created_by"),
    ("error_groups", "resolved_by"),
    ("runbook_executions", "requested_by"),
    ("runbook_executions", "approved_by"),
    ("settings", "updated_by"),
)
# Every name the worker, the ingest path and the demo loader wrote before this revision.
SYSTEM_NAMES = ("alerting", "escalation", "auto-recovery", "error-tracking", "notify", "demo")


def _prefixed(prefix: str, value: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return sa.literal(prefix, sa.Text) + value


def upgrade() -> None:
    for table, column in ACTOR_COLUMNS:
        rows = sa.table(table, sa.column(column, sa.Text))
        who = rows.c[column]
        new = sa.case(
            (who.like("api-key:%"), _prefixed("apikey:", sa.func.substr(who, 9))),
            (who.in_(SYSTEM_NAMES), _prefixed("system:", who)),
            (who == "system", "system:notify"),  # the self-alert rule's creator
            else_=_prefixed("user:", who),
        )
        op.execute(
            sa.update(rows)
            .values({column: new})
            .where(who != "", sa.not_(who.regexp_match("^(user|apikey|system):")))
        )


def downgrade() -> None:
    # Earlier code treats these values as opaque text, so the new format reads fine there.
    pass
