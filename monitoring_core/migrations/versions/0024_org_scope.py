"""Organisation-scoped views: row-level security on the tables that carry organization_id

Revision ID: 0024
Revises: 0023

A user limited to organisations (`users.organization_ids`, NULL = every organisation) reads
through the `monitoring_scoped` login role (`monitoring_core.org_scope`). That role owns
nothing, may SELECT only the organisation tables below, and every row it reads passes a
row-level-security policy: the row's organisation must be in the scope named by the session's
`monitoring.scope_token`. The token is random and only its SHA-256 is stored
(`org_scope_grants`, which the role cannot read); `monitoring_scope_orgs()` (SECURITY DEFINER)
turns the session's token into its organisations. So SQL run in such a session, written by
hand and with no WHERE clause, still sees only its organisations' rows, and it cannot widen
its scope by setting another value: it would have to know another live token.

The owner (`monitoring_app`: API, worker, UI for unrestricted users) bypasses RLS as the
tables' owner; other roles (the SQL-collector reader) see every row their grants allow.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

SCOPED_ROLE = "monitoring_scoped"
# A group is in scope when one of the scope's organisations had an event in it.
_GROUP_IN_SCOPE = (
    "EXISTS (SELECT 1 FROM error_group_members m WHERE m.group_id = {group}"
    " AND m.kind = 'organization' AND m.value IN (SELECT unnest(monitoring_scope_orgs())))"
)
# table -> the USING clause for rows the scoped role may read
POLICIES = {
    "error_events": "organization_id IN (SELECT unnest(monitoring_scope_orgs()))",
    "business_events": "organization_id IN (SELECT unnest(monitoring_scope_orgs()))",
    "error_group_members": (
        "kind = 'organization' AND value IN (SELECT unnest(monitoring_scope_orgs()))"
    ),
    "error_groups": _GROUP_IN_SCOPE.format(group="error_groups.id"),
    "error_group_changes": _GROUP_IN_SCOPE.format(group="error_group_changes.group_id"),
    "incident_error_groups": _GROUP_IN_SCOPE.format(group="incident_error_groups.error_group_id"),
    # an incident is theirs when it is linked to an error group of theirs
    "incidents": (
        "EXISTS (SELECT 1 FROM incident_error_groups l WHERE l.incident_id = incidents.id AND "  # noqa: S608
        + _GROUP_IN_SCOPE.format(group="l.error_group_id")
        + ")"
    ),
}


def upgrade() -> None:
    op.add_column("users", sa.Column("organization_ids", postgresql.ARRAY(sa.Text())))
    op.create_table(
        "org_scope_grants",
        sa.Column("token_hash", sa.LargeBinary(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("organization_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("REVOKE ALL ON org_scope_grants FROM PUBLIC")
    op.execute(
        """
        CREATE FUNCTION monitoring_scope_orgs() RETURNS text[]
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT coalesce((
                SELECT organization_ids FROM org_scope_grants
                WHERE token_hash = sha256(convert_to(
                        coalesce(current_setting('monitoring.scope_token', true), ''), 'UTF8'))
                  AND expires_at > now()
            ), '{}'::text[])
        $$
        """
    )
    # EXECUTE stays with PUBLIC (the default): every role's reads plan both policies, and the
    # function answers only for the caller's own token.
    for table, using in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        # Every non-owner role but the scoped one reads what its grants allow, as before.
        op.execute(
            f"CREATE POLICY unscoped ON {table} FOR SELECT USING (current_user <> '{SCOPED_ROLE}')"
        )
        op.execute(
            f"CREATE POLICY organisation_scope ON {table} FOR SELECT"
            f" USING (current_user = '{SCOPED_ROLE}' AND {using})"
        )
    # The role is made by `db.ensure_roles` (a superuser's job); grants when it exists, and
    # `ensure_roles` grants again on every start (db.SCOPED_TABLES).
    tables = ", ".join(POLICIES)
    grant = (  # our own constants only
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SCOPED_ROLE}') THEN
            GRANT SELECT ON {tables} TO {SCOPED_ROLE};
            GRANT EXECUTE ON FUNCTION monitoring_scope_orgs() TO {SCOPED_ROLE};
          END IF;
        END $$
        """  # noqa: S608
    )
    op.execute(grant)


def downgrade() -> None:
    for table in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS organisation_scope ON {table}")
        op.execute(f"DROP POLICY IF EXISTS unscoped ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS monitoring_scope_orgs()")
    op.drop_table("org_scope_grants")
    op.drop_column("users", "organization_ids")
