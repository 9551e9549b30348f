"""api keys: read and browser scopes, expiry, allowed origins (issue 13, items 3 and 13)

An ingest key no longer reads: read access is decided from the scope on every request
(`monitoring_core.api.deps`), so existing ingest keys lose it with this release and no stored
row has to change. Dashboards that read with an ingest key need a `read` key
(`python -m monitoring_core apikey add NAME --scope read`).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column(
            "allowed_origins",
            sa.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
    )
    op.drop_constraint(op.f("ck_api_keys_scope_valid"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_scope_valid"),
        "api_keys",
        "scope IN ('ingest','read','browser','admin')",
    )


def downgrade() -> None:
    # Keys of the new scopes have no meaning before this revision: they are revoked.
    op.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()), scope = 'ingest' "
        "WHERE scope IN ('read', 'browser')"
    )
    op.drop_constraint(op.f("ck_api_keys_scope_valid"), "api_keys", type_="check")
    op.create_check_constraint(
        op.f("ck_api_keys_scope_valid"), "api_keys", "scope IN ('ingest','admin')"
    )
    op.drop_column("api_keys", "allowed_origins")
    op.drop_column("api_keys", "expires_at")
