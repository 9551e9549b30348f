"""log_records: a record's trace id is found through its block's codes, not a per-row index

Revision ID: 0032
Revises: 0031

`ix_log_records_trace_id` (a btree over a random 32-character key on every record) was the
largest share of the database's work per stored log record (~4-5 µs of ~15 µs of CPU). A
block's codes (`block_trgm`, `logs.trigrams`) now also hold the word code of each distinct
trace id of its records, so "logs of this trace" asks the GIN index for the blocks holding it
and checks `trace_id` in their rows (`logs.queries`). Blocks written before this revision get
their trace ids' codes here; the per-row index is dropped.
"""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

# logs.trigrams' word codes: 2^24 + CRC-32 of the word's bytes modulo the word range
_WORD_BASE = 1 << 24
_WORD_SPAN = (1 << 31) - _WORD_BASE
_CHUNK = 1000  # blocks per UPDATE


def _code(trace_id: str) -> int:
    return _WORD_BASE + zlib.crc32(trace_id.encode("utf-8", "surrogatepass").lower()) % _WORD_SPAN


def upgrade() -> None:
    conn = op.get_bind()
    blocks = conn.execute(
        sa.text(
            "SELECT block, array_agg(DISTINCT trace_id) FROM log_records"
            " WHERE trace_id IS NOT NULL AND block IS NOT NULL GROUP BY block"
        )
    ).all()
    for first in range(0, len(blocks), _CHUNK):
        codes = {
            str(block): sorted({_code(t) for t in trace_ids})
            for block, trace_ids in blocks[first : first + _CHUNK]
        }
        conn.execute(
            sa.text(
                "UPDATE log_records l SET block_trgm = l.block_trgm"
                " || ARRAY(SELECT CAST(jsonb_array_elements_text(m.value) AS int))"
                " FROM jsonb_each(CAST(:codes AS jsonb)) m"
                " WHERE l.block = CAST(m.key AS bigint) AND l.block_trgm IS NOT NULL"
            ),
            {"codes": json.dumps(codes)},
        )
    op.drop_index("ix_log_records_trace_id", table_name="log_records")


def downgrade() -> None:
    op.create_index("ix_log_records_trace_id", "log_records", ["trace_id"])
