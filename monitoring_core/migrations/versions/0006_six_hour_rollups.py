"""rollups: a 6-hour level, so 30-day charts in 6-hour bins merge 120 rows per series, not 720

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
HB = "date_bin('6 hours', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def _hist() -> list[sa.Column]:
    return [
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("hist_keys", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("hist_counts", postgresql.ARRAY(sa.BigInteger()), nullable=False),
    ]


def _backfill(target: str, source: str, keys: tuple[str, ...], extra: str, extra_cols: str) -> None:
    """Existing hourly rows merged into 6-hour rows (the same merge the rollup job does)."""
    by = ", ".join((*keys, "hb"))
    src = f"SELECT {HB} AS hb, * FROM {source}"
    names = ", ".join(("bucket", *keys, "count", "sum", "min", "max", "hist_keys", "hist_counts", extra_cols))
    op.execute(
        f"INSERT INTO {target} ({names}) SELECT {names} FROM ("
        f"SELECT t.hb AS bucket, t.*, h.hist_keys, h.hist_counts FROM "
        f"(SELECT {by}, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, "
        f"max(max) AS max, {extra} FROM ({src}) s GROUP BY {by}) t "
        f"JOIN (SELECT {by}, array_agg(k ORDER BY k) AS hist_keys, "
        f"array_agg(c ORDER BY k) AS hist_counts FROM (SELECT {by}, u.k, "
        f"sum(u.c)::bigint AS c FROM ({src}) s, unnest(s.hist_keys, s.hist_counts) AS u(k, c) "
        f"GROUP BY {by}, u.k) x GROUP BY {by}) h USING ({by})) r"
    )


def upgrade() -> None:
    op.create_table(
        "metric_rollup_6h",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket", TS, nullable=False),
        *_hist(),
        sa.Column("last", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name="pk_metric_rollup_6h"),
    )
    op.create_index("ix_metric_rollup_6h_bucket", "metric_rollup_6h", ["bucket"])
    op.create_table(
        "api_rollup_6h",
        sa.Column("bucket", TS, nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        *_hist(),
        sa.PrimaryKeyConstraint("bucket", "method", "endpoint", name="pk_api_rollup_6h"),
    )
    op.create_table(
        "api_total_6h",
        sa.Column("bucket", TS, nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("client_error_count", sa.BigInteger(), nullable=False),
        *_hist(),
        sa.PrimaryKeyConstraint("bucket", name="pk_api_total_6h"),
    )
    last = "(max(ARRAY[date_part('epoch', bucket), last]))[2] AS last"
    errors = (
        "sum(error_count)::bigint AS error_count, "
        "sum(client_error_count)::bigint AS client_error_count"
    )
    _backfill("metric_rollup_6h", "metric_rollup_1h", ("series_id",), last, "last")
    _backfill("api_rollup_6h", "api_rollup_1h", ("method", "endpoint"), errors, "error_count, client_error_count")
    _backfill("api_total_6h", "api_total_1h", (), errors, "error_count, client_error_count")


def downgrade() -> None:
    op.drop_table("api_total_6h")
    op.drop_table("api_rollup_6h")
    op.drop_index("ix_metric_rollup_6h_bucket", table_name="metric_rollup_6h")
    op.drop_table("metric_rollup_6h")
