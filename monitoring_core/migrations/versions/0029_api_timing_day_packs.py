"""api_timing_packs: day packs for sparse keys (slots, end_time)

A key (method, endpoint, status) with few requests per half hour pays a pack row's overhead
(~700 B with its arrays' headers and index entries) every half hour: at ~13 requests that is
~76 B per request. Such keys' half-hour packs of a past day are merged into one day pack
(`compaction.repack_sparse_days`): `slots` holds each request's half hour of the day (0-47),
`offsets` stay microseconds after that half hour (int4). Half-hour packs keep `slots` NULL.
`end_time` is the pack's last request (NULL in packs written before this revision: their
half hour's end stands for it), so a read opens only packs that reach into its span.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_timing_packs", sa.Column("slots", postgresql.ARRAY(sa.SmallInteger())))
    op.add_column("api_timing_packs", sa.Column("end_time", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.execute(
        "DELETE FROM api_timing_packs WHERE slots IS NOT NULL"
    )  # day packs cannot be read without their slots
    op.drop_column("api_timing_packs", "end_time")
    op.drop_column("api_timing_packs", "slots")
