"""The data model: one SQLAlchemy Core metadata, the single source of truth for Alembic.

Raw, high-volume tables are partitioned by day on their `time` column (see `partitions.py`);
they carry `ingested_at` so rollups can advance incrementally from a watermark and still pick
up late points. Citus distribution keys, should one database stop being enough: metric_points
by series_id, api_timings by endpoint, error_events by group_id, business_events by
organization_id; every configuration table is a reference table.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    Table,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

__all__ = ["PARTITIONED_TABLES", "metadata"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True, now: bool = False) -> Column:
    return Column(
        name, DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
    )


def _created() -> Column:
    return _ts("created_at", nullable=False, now=True)


def _jsonb(name: str, default: str = "'{}'::jsonb") -> Column:
    return Column(name, JSONB, nullable=False, server_default=text(default))


def _text_array(name: str) -> Column:
    return Column(name, ARRAY(Text), nullable=False, server_default=text("'{}'::text[]"))


def _partitioned(name: str, *cols: Column | Index) -> Table:
    """A raw table partitioned by day on `time`, with `ingested_at` for incremental rollups."""
    return Table(
        name,
        metadata,
        _ts("time", nullable=False),
        *cols,
        _ts("ingested_at", nullable=False, now=True),
        postgresql_partition_by="RANGE (time)",
    )


def _histogram_cols() -> list[Column]:
    """count/sum/min/max plus a log-bucket histogram (see `histogram.py`): all mergeable."""
    return [
        Column("count", BigInteger, nullable=False),
        Column("sum", Double, nullable=False),
        Column("min", Double, nullable=False),
        Column("max", Double, nullable=False),
        Column("hist_keys", ARRAY(Integer), nullable=False),
        Column("hist_counts", ARRAY(BigInteger), nullable=False),
    ]


# ---------------------------------------------------------------- metrics
metric_catalog = Table(
    "metric_catalog",
    metadata,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("unit", Text, nullable=False, server_default=""),
    Column("metric_type", Text, nullable=False, server_default="gauge"),
    Column("category", Text, nullable=False, server_default="custom"),
    Column("retention_days", Integer),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    _created(),
)

metric_series = Table(
    "metric_series",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    _jsonb("dimensions"),
    Column("source_system", Text),
    _created(),
    UniqueConstraint("name", "dimensions"),
)

metric_points = _partitioned(
    "metric_points",
    Column("series_id", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
)
Index("ix_metric_points_series_time", metric_points.c.series_id, metric_points.c.time)
Index("ix_metric_points_ingested", metric_points.c.ingested_at, postgresql_using="brin")
Index("ix_metric_points_time", metric_points.c.time, postgresql_using="brin")

# Compacted raw points (monitoring_core/compaction.py, codec in chunks/codec.py): one row per
# series and stretch, start/end = its first/last point; read with points_reader.read_points.
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("series_id", BigInteger, primary_key=True),
    Column("start_time", DateTime(timezone=True), primary_key=True),
    _ts("end_time", nullable=False),
    Column("count", Integer, nullable=False),
    Column("times", LargeBinary, nullable=False),
    Column("vals", LargeBinary, nullable=False),
    postgresql_with={"fillfactor": 100},
)
Index("ix_metric_chunks_end_time", metric_chunks.c.end_time)

# Prometheus staleness markers from remote write (prometheus/staleness.py): a series ends there
# for PromQL's instant selectors (the points table holds finite values only).
metric_stale_markers = Table(
    "metric_stale_markers",
    metadata,
    Column(
        "series_id",
        BigInteger,
        ForeignKey("metric_series.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("time", DateTime(timezone=True), primary_key=True),
)


def _metric_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("series_id", BigInteger, primary_key=True),
        Column("bucket", DateTime(timezone=True), primary_key=True),
        *_histogram_cols(),
        Column("last", Double, nullable=False),
    )


metric_rollup_1m = _metric_rollup("metric_rollup_1m")
metric_rollup_1h = _metric_rollup("metric_rollup_1h")
Index("ix_metric_rollup_1m_bucket", metric_rollup_1m.c.bucket)
Index("ix_metric_rollup_1h_bucket", metric_rollup_1h.c.bucket)
# Daily rows (merged from hourly) keep 30-day reads to ~30 rows per series.
metric_rollup_1d = _metric_rollup("metric_rollup_1d")
Index("ix_metric_rollup_1d_bucket", metric_rollup_1d.c.bucket)
# 6-hour rows: 30-day charts in 6-hour bins merge 120 rows per series instead of 720 hourly.
metric_rollup_6h = _metric_rollup("metric_rollup_6h")
Index("ix_metric_rollup_6h_bucket", metric_rollup_6h.c.bucket)

rollup_watermarks = Table(
    "rollup_watermarks",
    metadata,
    Column("name", Text, primary_key=True),
    _ts("watermark", nullable=False),
    _ts("updated_at", nullable=False, now=True),
)

# Bucket ranges the rollup job could not compute (e.g. a float8 sum overflowing on stored
# values): recorded and skipped so that no stored row can stop every rollup.
rollup_quarantine = Table(
    "rollup_quarantine",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("family", Text, nullable=False),
    Column("target_table", Text, nullable=False),
    _ts("range_start", nullable=False),
    _ts("range_end", nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    _ts("first_seen", nullable=False, now=True),
    _ts("last_seen", nullable=False, now=True),
    UniqueConstraint("target_table", "range_start", "range_end"),
)

# ---------------------------------------------------------------- performance
api_timings = _partitioned(
    "api_timings",
    Column("method", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("status_code", SmallInteger, nullable=False),
    Column("response_time_ms", Double, nullable=False),
    Column("user_type", Text),
    Column("database_query_time_ms", Double),
    Column("external_api_time_ms", Double),
    Column("cache_hit", Boolean),
    Column("request_id", Text),
)
Index("ix_api_timings_time", api_timings.c.time, postgresql_using="brin")
Index("ix_api_timings_ingested", api_timings.c.ingested_at, postgresql_using="brin")

# API timings older than a day, packed column-wise (compaction.pack_api_timings): one row per
# half hour, method, endpoint and status; offsets in microseconds after start_time, the optional
# columns NULL when no request of the pack had them. Read with chunks.timings.source_sql.
api_timing_packs = Table(
    "api_timing_packs",
    metadata,
    Column("start_time", DateTime(timezone=True), primary_key=True),
    Column("method", Text, primary_key=True),
    Column("endpoint", Text, primary_key=True),
    Column("status_code", SmallInteger, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("offsets", ARRAY(Integer), nullable=False),
    Column("durations", ARRAY(Double), nullable=False),
    Column("user_types", ARRAY(Text)),
    Column("db_ms", ARRAY(Double)),
    Column("external_ms", ARRAY(Double)),
    Column("cache_hits", ARRAY(Boolean)),
    Column("request_ids", ARRAY(Text)),
    Column("packed_at", DateTime(timezone=True), primary_key=True, server_default=func.now()),
    # day packs of sparse keys (compaction.repack_sparse_days): each request's half hour of the
    # day (0-47), offsets after it; NULL in half-hour packs. end_time: the last request (NULL
    # in packs older than migration 0029).
    Column("slots", ARRAY(SmallInteger)),
    _ts("end_time"),
    postgresql_with={"fillfactor": 100},
)


def _api_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime(timezone=True), primary_key=True),
        Column("method", Text, primary_key=True),
        Column("endpoint", Text, primary_key=True),
        Column("error_count", BigInteger, nullable=False),  # status >= 500
        Column("client_error_count", BigInteger, nullable=False),  # 400..499
        *_histogram_cols(),
    )


api_rollup_1m = _api_rollup("api_rollup_1m")
api_rollup_1h = _api_rollup("api_rollup_1h")
api_rollup_1d = _api_rollup("api_rollup_1d")
api_rollup_6h = _api_rollup("api_rollup_6h")


def _api_total(name: str) -> Table:
    """All endpoints merged per bucket: the Overview reads one row per bucket, not twenty."""
    return Table(
        name,
        metadata,
        Column("bucket", DateTime(timezone=True), primary_key=True),
        Column("error_count", BigInteger, nullable=False),
        Column("client_error_count", BigInteger, nullable=False),
        *_histogram_cols(),
    )


api_total_1m = _api_total("api_total_1m")
api_total_1h = _api_total("api_total_1h")
api_total_1d = _api_total("api_total_1d")
api_total_6h = _api_total("api_total_6h")

web_vitals = _partitioned(
    "web_vitals",
    Column("name", Text, nullable=False),
    Column("value", Double, nullable=False),
    Column("rating", Text, nullable=False),
    Column("page_route", Text, nullable=False),
    Column("device_type", Text, nullable=False, server_default="unknown"),
    Column("connection_type", Text),
    Column("browser", Text),
    Column("country_code", Text),
    Column("session_id", Text),
    Column("metric_id", Text),
    Column("navigation_type", Text),
)
Index("ix_web_vitals_time", web_vitals.c.time, postgresql_using="brin")
Index("ix_web_vitals_ingested", web_vitals.c.ingested_at, postgresql_using="brin")


def _vitals_rollup(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("bucket", DateTime(timezone=True), primary_key=True),
        Column("name", Text, primary_key=True),
        Column("page_route", Text, primary_key=True),
        Column("device_type", Text, primary_key=True),
        Column("good", BigInteger, nullable=False),
        Column("needs_improvement", BigInteger, nullable=False),
        Column("poor", BigInteger, nullable=False),
        *_histogram_cols(),
    )


web_vitals_rollup_1h = _vitals_rollup("web_vitals_rollup_1h")
web_vitals_rollup_1d = _vitals_rollup("web_vitals_rollup_1d")

# ---------------------------------------------------------------- traces and logs (OTLP)
# Ids are lowercase hex (32 / 16 characters), as OTLP/JSON and the W3C traceparent spell them.
spans = _partitioned(
    "spans",
    Column("trace_id", Text, nullable=False),
    Column("span_id", Text, nullable=False),
    Column("parent_span_id", Text),
    Column("service", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # OTLP SpanKind: 0 unspecified … 5 consumer
    Column("duration_ms", Double, nullable=False),
    Column("status_code", SmallInteger, nullable=False),  # 0 unset, 1 ok, 2 error
    Column("status_message", Text),
    _jsonb("attributes"),
    _jsonb("events", "'[]'::jsonb"),
    _jsonb("resource"),
    Column("scope", Text),
)
Index("ix_spans_time", spans.c.time, postgresql_using="brin")
Index("ix_spans_trace_id", spans.c.trace_id)
Index("ix_spans_service_time", spans.c.service, spans.c.time)

log_records = _partitioned(
    "log_records",
    Column("severity_number", SmallInteger, nullable=False),  # OTLP 0..24 (9 INFO, 17 ERROR)
    Column("severity_text", Text),
    Column("body", Text, nullable=False),
    Column("trace_id", Text),
    Column("span_id", Text),
    Column("service", Text, nullable=False),
    _jsonb("attributes"),
    _jsonb("resource"),
    # search blocks (logs.store, migration 0023): every row's block id; the block's earliest
    # row also holds the block's distinct body trigrams and its latest time
    Column("block", BigInteger),
    Column("block_trgm", ARRAY(Integer)),
    Column("block_end", DateTime(timezone=True)),
)
Index("ix_log_records_time", log_records.c.time, postgresql_using="brin")
Index("ix_log_records_block", log_records.c.block)
Index(
    "ix_log_records_block_trgm",
    log_records.c.block_trgm,
    postgresql_using="gin",
    postgresql_where=text("block_trgm IS NOT NULL"),
)
Index(  # the newest blocks of a window first (logs.queries: common needles), 0030 and 0031
    "ix_log_records_block_end",
    log_records.c.block_end,
    postgresql_where=text("block_end IS NOT NULL"),
)
# no index over trace_id: a block's codes hold its records' trace ids (migration 0032)
Index(
    "ix_log_records_service_severity_time",
    log_records.c.service,
    log_records.c.severity_number,
    log_records.c.time,
)
# ix_log_records_body_trgm (GIN, gin_trgm_ops) is made by migration 0015 where pg_trgm exists.

# Log records, body bytes and refused records per UTC day and service (the daily cap).
log_volume = Table(
    "log_volume",
    metadata,
    Column("day", Date, primary_key=True),
    Column("service", Text, primary_key=True),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("body_bytes", BigInteger, nullable=False, server_default="0"),
    Column("refused", BigInteger, nullable=False, server_default="0"),
)

# The last cumulative value seen per OTLP sum series (delta = value - previous, or the
# value itself after a restart: a new start time or a smaller value).
otlp_cumulative = Table(
    "otlp_cumulative",
    metadata,
    Column("key", Text, primary_key=True),
    Column("start_ns", BigInteger, nullable=False),
    Column("value", Double, nullable=False),
    _ts("time", nullable=False),
    Column("buckets", JSONB),  # a histogram series' previous cumulative buckets
)

# OTLP histogram points (otlp/histograms.py): one row per data point (a cumulative one as its
# delta), the buckets spread over the log buckets of histogram.py; the metric rollup folds
# them into the 1-minute rows of their series.
metric_histograms = _partitioned(
    "metric_histograms",
    Column("series_id", BigInteger, nullable=False),
    *_histogram_cols(),
)
Index(
    "ix_metric_histograms_series_id_time", metric_histograms.c.series_id, metric_histograms.c.time
)
Index(
    "ix_metric_histograms_ingested_at",
    metric_histograms.c.ingested_at,
    postgresql_using="brin",
)

# ---------------------------------------------------------------- errors
error_groups = Table(
    "error_groups",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("fingerprint", Text, nullable=False, unique=True),
    Column("error_type", Text, nullable=False),
    Column("message_template", Text, nullable=False),
    Column("culprit", Text),
    Column("level", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="unresolved"),
    _text_array("services"),
    _ts("first_seen", nullable=False),
    _ts("last_seen", nullable=False),
    Column("event_count", BigInteger, nullable=False, server_default="0"),
    Column("user_count", BigInteger, nullable=False, server_default="0"),
    Column("organization_count", BigInteger, nullable=False, server_default="0"),
    _ts("resolved_at"),
    Column("resolved_by", Text),
    Column("resolved_in_release", Text),
    _ts("regressed_at"),
    _ts("recovered_at"),
    Column("last_release", Text),
    Column("assigned_to", Text),
    CheckConstraint(
        "status IN ('unresolved','resolved','ignored','regressed')", name="status_valid"
    ),
)
Index("ix_error_groups_last_seen", error_groups.c.last_seen)

error_events = _partitioned(
    "error_events",
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("group_id", BigInteger, nullable=False),
    Column("error_type", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("service_name", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("stack_trace", Text),
    _jsonb("frames", "'[]'::jsonb"),
    Column("endpoint_path", Text),
    Column("user_id", Text),
    Column("organization_id", Text),
    Column("session_id", Text),
    Column("request_id", Text),
    Column("trace_id", Text),
    Column("release", Text),
    Column("environment", Text),
    _jsonb("tags"),
    _jsonb("context"),
)
Index("ix_error_events_group_time", error_events.c.group_id, error_events.c.time)
Index("ix_error_events_trace", error_events.c.trace_id)
Index("ix_error_events_event_id", error_events.c.event_id)

# Distinct users/organizations per group: ON CONFLICT DO NOTHING RETURNING tells which pairs are
# new, so the group's counts stay exact under concurrent ingest (no count(DISTINCT) rescans).
error_group_members = Table(
    "error_group_members",
    metadata,
    Column(
        "group_id", BigInteger, ForeignKey("error_groups.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("kind", Text, primary_key=True),  # user|organization
    Column("value", Text, primary_key=True),
)

# Sentry event_id dedup: a unique index on the partitioned error_events would have to include
# `time`, and a resent event is not guaranteed the same time, so ids live in a plain table,
# pruned by time after the dedup horizon.
error_event_ids = Table(
    "error_event_ids",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    _ts("time", nullable=False),
)
Index("ix_error_event_ids_time", error_event_ids.c.time, postgresql_using="brin")

# Append-only history of a group: new, regressed, resolved, ignored, reopened, recovered.
error_group_changes = Table(
    "error_group_changes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "group_id", BigInteger, ForeignKey("error_groups.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("time", nullable=False),
    Column("kind", Text, nullable=False),
    Column("actor", Text),
    Column("release", Text),
    _jsonb("details"),
)
Index("ix_error_group_changes_time", error_group_changes.c.time)
Index(
    "ix_error_group_changes_group_time", error_group_changes.c.group_id, error_group_changes.c.time
)

# ---------------------------------------------------------------- business
business_events = _partitioned(
    "business_events",
    Column("event_type", Text, nullable=False),
    Column("user_id", Text),
    Column("organization_id", Text),
    Column("session_id", Text),
    _jsonb("properties"),
    Column("revenue", Numeric(14, 2)),
    Column("currency", Text),
)
Index("ix_business_events_type_time", business_events.c.event_type, business_events.c.time)
Index("ix_business_events_user_time", business_events.c.user_id, business_events.c.time)

business_metrics_daily = Table(
    "business_metrics_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("metric_name", Text, primary_key=True),
    Column("value", Double, nullable=False),
    _ts("updated_at", nullable=False, now=True),
)

# ---------------------------------------------------------------- alerting
notification_channels = Table(
    "notification_channels",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("url", Text, nullable=False),  # an Apprise URL: a secret, shown masked
    _text_array("tags"),
    Column("is_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("rate_limit_per_minute", Integer, nullable=False, server_default="30"),
    _created(),
    # set: a person's contact method (oncall/), reached through schedules, steps and routes
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True),
)

escalation_policies = Table(
    "escalation_policies",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    # [{"after_minutes": 0, "channels": [channel ids]}, ...]
    _jsonb("steps", "'[]'::jsonb"),
    Column("repeat", Boolean, nullable=False, server_default=text("false")),
    Column("is_wedding_day", Boolean, nullable=False, server_default=text("false")),
    _created(),
)

# ---------------------------------------------------------------- on call (oncall/)
oncall_schedules = Table(
    "oncall_schedules",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    _created(),
)

oncall_layers = Table(
    "oncall_layers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "schedule_id",
        BigInteger,
        ForeignKey("oncall_schedules.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", Text, nullable=False, server_default=""),
    Column("level", Integer, nullable=False, server_default="1"),  # the higher level wins
    Column("rotation", Text, nullable=False),  # daily | weekly
    Column("handoff_time", Time, nullable=False, server_default="09:00"),  # business tz
    Column("handoff_weekday", SmallInteger),  # weekly: 0 = Monday .. 6 = Sunday
    Column("starts_on", Date, nullable=False),  # the first member's first shift
    Column("members", ARRAY(BigInteger), nullable=False),  # user ids, in turn
    # weekdays (0 = Monday, business tz) the layer covers, e.g. a weekend layer; empty: all
    Column(
        "active_days", ARRAY(SmallInteger), nullable=False, server_default=text("'{}'::smallint[]")
    ),
    _created(),
    CheckConstraint("rotation IN ('daily','weekly')", name="rotation_valid"),
    CheckConstraint(
        "handoff_weekday IS NULL OR handoff_weekday BETWEEN 0 AND 6", name="weekday_valid"
    ),
)

oncall_overrides = Table(
    "oncall_overrides",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "schedule_id",
        BigInteger,
        ForeignKey("oncall_schedules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    _ts("starts_at", nullable=False),
    _ts("ends_at", nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False),
    _created(),
    CheckConstraint("ends_at > starts_at", name="span_valid"),
)
Index(
    "ix_oncall_overrides_schedule_end",
    oncall_overrides.c.schedule_id,
    oncall_overrides.c.ends_at,
)

notification_routes = Table(
    "notification_routes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("min_severity", Text, nullable=False, unique=True),
    _jsonb("targets"),  # {"channels": [ids], "users": [ids], "schedules": [ids]}
    _created(),
    CheckConstraint(
        "min_severity IN ('critical','high','medium','low','info')", name="severity_valid"
    ),
)

runbooks = Table(
    "runbooks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("service_name", Text),
    Column("alert_rule_id", BigInteger),
    Column("error_group_id", BigInteger),
    Column("requires_approval", Boolean, nullable=False, server_default=text("false")),
    Column("wedding_day_approved", Boolean, nullable=False, server_default=text("false")),
    # [{"title", "kind": manual|http|notify|health_check, "config", "wedding_day_safe"}]
    _jsonb("steps", "'[]'::jsonb"),
    Column("run_count", Integer, nullable=False, server_default="0"),
    Column("success_count", Integer, nullable=False, server_default="0"),
    _created(),
)

alert_rules = Table(
    "alert_rules",  # `alert_configurations` in the API (docs/API.md "Field names")
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("metric_name", Text),
    _jsonb("condition_config"),
    Column("severity_level", Text, nullable=False),
    Column("notification_channels", ARRAY(BigInteger), nullable=False, server_default="{}"),
    Column("escalation_policy_id", BigInteger, ForeignKey("escalation_policies.id")),
    _jsonb("suppression_rules"),
    Column("is_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("weekend_escalation", Boolean, nullable=False, server_default=text("false")),
    Column("wedding_season_adjustment", Boolean, nullable=False, server_default=text("false")),
    Column("repeat_interval_minutes", Integer, nullable=False, server_default="60"),
    Column("runbook_id", BigInteger, ForeignKey("runbooks.id")),
    Column("service_name", Text),
    Column("created_by", Text),
    _created(),
    _ts("updated_at", nullable=False, now=True),
    # First evaluation that saw data since the rule was created, enabled or its condition
    # changed: until then "no data" is listed but never paged (the data has not arrived yet).
    _ts("data_seen_at"),
    CheckConstraint(
        "severity_level IN ('critical','high','medium','low','info')", name="severity_valid"
    ),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("incident_number", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("severity", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="open"),
    _text_array("affected_services"),
    Column("affected_users_count", Integer),
    Column("root_cause", Text),
    Column("resolution_summary", Text),
    _ts("detected_at", nullable=False, now=True),
    _ts("acknowledged_at"),
    _ts("mitigated_at"),
    _ts("resolved_at"),
    _ts("closed_at"),
    Column("assigned_to", Text),
    Column("created_by", Text),
    _text_array("tags"),
    Column("is_saturday", Boolean, nullable=False, server_default=text("false")),
    Column("wedding_impact", Text, nullable=False, server_default="none"),
    Column("escalation_policy_id", BigInteger, ForeignKey("escalation_policies.id")),
    Column("escalation_step", Integer, nullable=False, server_default="0"),
    _ts("last_escalated_at"),
    Column("postmortem_markdown", Text),
    _created(),
    _ts("updated_at", nullable=False, now=True),
    CheckConstraint("severity IN ('SEV1','SEV2','SEV3','SEV4')", name="severity_valid"),
    CheckConstraint(
        "status IN ('open','investigating','mitigating','resolved','closed')", name="status_valid"
    ),
)

alert_instances = Table(
    "alert_instances",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "alert_configuration_id",
        BigInteger,
        ForeignKey("alert_rules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("alert_key", Text, nullable=False, server_default=""),
    Column("status", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("trigger_count", Integer, nullable=False, server_default="0"),
    _ts("pending_since"),
    _ts("first_triggered_at"),
    _ts("last_triggered_at"),
    _ts("last_evaluated_at"),
    _ts("resolved_at"),
    _ts("acknowledged_at"),
    Column("acknowledged_by", Text),
    _ts("suppressed_until"),
    Column("trigger_value", Double),
    _jsonb("trigger_dimensions"),
    Column("escalation_step", Integer, nullable=False, server_default="0"),
    _ts("last_escalated_at"),
    _ts("last_notified_at"),
    Column("incident_id", BigInteger, ForeignKey("incidents.id")),
    _ts("no_data_since"),  # when the data stopped (set on entering no_data)
    # Alerts received from Prometheus/Grafana (rule type `external`): resolved when not
    # re-sent by this time (flows/external_alerts).
    _ts("external_ends_at"),
    UniqueConstraint("alert_configuration_id", "alert_key"),
)
Index(
    "ix_alert_instances_active",
    alert_instances.c.status,
    postgresql_where=alert_instances.c.status.in_(["pending", "firing", "acknowledged"]),
)
Index(
    "ix_alert_instances_external_ends_at",
    alert_instances.c.external_ends_at,
    postgresql_where=alert_instances.c.external_ends_at.isnot(None),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("instance_id", BigInteger, ForeignKey("alert_instances.id", ondelete="CASCADE")),
    Column("rule_id", BigInteger, nullable=False),
    _ts("time", nullable=False),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    Column("value", Double),
    Column("message", Text, nullable=False, server_default=""),
    Column("actor", Text),
)
Index("ix_alert_events_rule_time", alert_events.c.rule_id, alert_events.c.time)

silences = Table(
    "silences",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # [{"name": "service", "value": "payments", "is_regex": false}], Alertmanager-style
    _jsonb("matchers", "'[]'::jsonb"),
    _ts("starts_at", nullable=False),
    _ts("ends_at", nullable=False),
    # {"weekday": 1, "start": "02:00", "end": "03:00"} for recurring maintenance windows
    Column("recurrence", JSONB),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_by", Text),
    _created(),
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("channel_id", BigInteger, ForeignKey("notification_channels.id"), nullable=False),
    Column("alert_instance_id", BigInteger, ForeignKey("alert_instances.id", ondelete="SET NULL")),
    Column("incident_id", BigInteger, ForeignKey("incidents.id")),
    Column("kind", Text, nullable=False),  # firing|resolved|repeat|escalation|test|self
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("notify_type", Text, nullable=False, server_default="info"),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=False, now=True),
    _ts("claimed_at"),
    Column("claimed_by", Text),
    _ts("sent_at"),
    Column("last_error", Text),
    _created(),
)
Index(
    "ix_notification_outbox_due",
    notification_outbox.c.next_attempt_at,
    postgresql_where=notification_outbox.c.status.in_(["pending", "sending"]),
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger, ForeignKey("notification_outbox.id", ondelete="CASCADE")),
    Column("channel_id", BigInteger, nullable=False),
    _ts("attempted_at", nullable=False, now=True),
    Column("status", Text, nullable=False),
    Column("latency_ms", Double),
    Column("error", Text),
)
Index(
    "ix_notification_deliveries_channel_time",
    notification_deliveries.c.channel_id,
    notification_deliveries.c.attempted_at,
)

# ---------------------------------------------------------------- incidents
incident_alerts = Table(
    "incident_alerts",
    metadata,
    Column(
        "incident_id", BigInteger, ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "alert_instance_id",
        BigInteger,
        ForeignKey("alert_instances.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _created(),
)

incident_error_groups = Table(
    "incident_error_groups",
    metadata,
    Column(
        "incident_id", BigInteger, ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "error_group_id",
        BigInteger,
        ForeignKey("error_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _created(),
)

incident_timeline = Table(
    "incident_timeline",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "incident_id", BigInteger, ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("time", nullable=False),
    Column("kind", Text, nullable=False),
    Column("actor", Text),
    Column("message", Text, nullable=False, server_default=""),
    _jsonb("details"),
    Column("is_public", Boolean, nullable=False, server_default=text("false")),
)
Index(
    "ix_incident_timeline_incident_time", incident_timeline.c.incident_id, incident_timeline.c.time
)

incident_action_items = Table(
    "incident_action_items",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "incident_id", BigInteger, ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False
    ),
    Column("title", Text, nullable=False),
    Column("owner", Text),
    Column("is_done", Boolean, nullable=False, server_default=text("false")),
    _ts("due_at"),
    _created(),
)

runbook_executions = Table(
    "runbook_executions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("runbook_id", BigInteger, ForeignKey("runbooks.id", ondelete="CASCADE"), nullable=False),
    Column("incident_id", BigInteger, ForeignKey("incidents.id")),
    Column("step_index", Integer, nullable=False),
    Column("status", Text, nullable=False),  # awaiting_approval|running|succeeded|failed|skipped
    Column("requested_by", Text),
    Column("approved_by", Text),
    _created(),
    _ts("finished_at"),
    Column("output", Text),
)

# ---------------------------------------------------------------- health
health_checks = Table(
    "health_checks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("check_name", Text, nullable=False, unique=True),
    Column("check_type", Text, nullable=False),
    _jsonb("check_config"),
    Column("service_name", Text),
    Column("check_frequency_seconds", Integer, nullable=False, server_default="60"),
    Column("timeout_seconds", Double, nullable=False, server_default="10"),
    Column("retries", Integer, nullable=False, server_default="2"),
    Column("is_enabled", Boolean, nullable=False, server_default=text("true")),
    Column("wedding_critical", Boolean, nullable=False, server_default=text("false")),
    Column("ping_token", Text, unique=True),
    Column("status", Text, nullable=False, server_default="unknown"),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    _ts("last_checked_at"),
    _ts("last_success_at"),
    _ts("last_ping_at"),
    _ts("last_start_at"),
    Column("last_ping_failed", Boolean, nullable=False, server_default=text("false")),
    _ts("next_run_at"),
    _created(),
    _ts("paused_at"),  # set while paused: not run, not judged, not alerted on
    _ts("resumed_at"),  # a resumed heartbeat waits for its first ping since then
    CheckConstraint(
        "check_type IN ('http','tcp','database','heartbeat','custom')", name="type_valid"
    ),
)

# Heartbeat pings as received: who, when, which kind, how long the job ran; of a body only its
# size and hash (job output can hold secrets and is never stored).
health_check_pings = Table(
    "health_check_pings",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "check_id", BigInteger, ForeignKey("health_checks.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("time", nullable=False),
    Column("kind", Text, nullable=False),
    Column("exit_status", SmallInteger),
    Column("duration_s", Double),
    Column("source", Text),
    Column("method", Text),
    Column("user_agent", Text),
    Column("body_bytes", Integer, nullable=False, server_default="0"),
    Column("body_sha256", Text),
    CheckConstraint("kind IN ('success','fail','start')", name="kind_valid"),
)
Index("ix_health_check_pings_check_time", health_check_pings.c.check_id, health_check_pings.c.time)

health_check_results = Table(
    "health_check_results",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "check_id", BigInteger, ForeignKey("health_checks.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("time", nullable=False),
    Column("success", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("response_time_ms", Double),
    Column("message", Text),
)
Index(
    "ix_health_check_results_check_time",
    health_check_results.c.check_id,
    health_check_results.c.time,
)

health_check_flips = Table(
    "health_check_flips",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "check_id", BigInteger, ForeignKey("health_checks.id", ondelete="CASCADE"), nullable=False
    ),
    _ts("time", nullable=False),
    Column("from_status", Text, nullable=False),
    Column("to_status", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("is_auto_recovery", Boolean, nullable=False, server_default=text("false")),
    _ts("processed_at"),
)
Index(
    "ix_health_check_flips_unprocessed",
    health_check_flips.c.id,
    postgresql_where=health_check_flips.c.processed_at.is_(None),
)

sql_collectors = Table(
    "sql_collectors",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False, server_default="sql"),  # sql|prometheus_scrape
    Column("url", Text, nullable=False),
    Column("query", Text),
    Column("metric_name", Text),
    Column("interval_seconds", Integer, nullable=False, server_default="60"),
    Column("is_enabled", Boolean, nullable=False, server_default=text("true")),
    _ts("last_run_at"),
    Column("last_error", Text),
    _created(),
)

# ---------------------------------------------------------------- people, keys, settings
users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("role", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    _created(),
    _ts("last_login_at"),
    Column("time_zone", Text),  # IANA name for the person's own clock; None: the business tz
    # None: every organisation; else the only organisations the user sees (org_scope, RLS)
    Column("organization_ids", ARRAY(Text)),
    CheckConstraint("role IN ('viewer','responder','admin')", name="role_valid"),
)

# Dashboards (monitoring_core.dashboards): panels of metric charts, per team, by URL.
dashboards = Table(
    "dashboards",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("team", Text, nullable=False, server_default=""),
    Column("panels", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("updated_by", Text),
    _ts("updated_at", nullable=False, now=True),
)

# Weekly digests (flows.digest): one per complete business week, built once, sent via the outbox.
digests = Table(
    "digests",
    metadata,
    Column("week_start", Date, primary_key=True),  # Monday in the business time zone
    _ts("built_at", nullable=False),
    Column("figures", JSONB, nullable=False),
    Column("markdown", Text, nullable=False),
    Column("channel_ids", ARRAY(BigInteger), nullable=False),
)

# A live organisation scope: the SHA-256 of a random token a `monitoring_scoped` session sets
# as `monitoring.scope_token`; `monitoring_scope_orgs()` (SECURITY DEFINER) reads it for the
# row-level-security policies (migration 0024). The scoped role cannot read this table.
org_scope_grants = Table(
    "org_scope_grants",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="CASCADE")),
    Column("organization_ids", ARRAY(Text), nullable=False),
    _ts("expires_at", nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),  # first characters, to tell keys apart in the UI
    Column("key_hash", Text, nullable=False, unique=True),  # sha256 of a 256-bit random key
    Column("scope", Text, nullable=False),
    Column("rate_limit_per_minute", Integer),  # requests; NULL: the default, 0: unlimited
    Column("points_per_minute", Integer),  # ingested items; NULL: the default, 0: unlimited
    _created(),
    _ts("last_used_at"),
    _ts("revoked_at"),
    _ts("expires_at"),  # NULL: never; checked on every lookup
    _text_array("allowed_origins"),  # browser keys: Origin must be one of these (empty: any)
    CheckConstraint("scope IN ('ingest','read','browser','admin')", name="scope_valid"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", JSONB, nullable=False),
    _ts("updated_at", nullable=False, now=True),
    Column("updated_by", Text),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    _ts("time", nullable=False, now=True),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text),
    _jsonb("details"),
)
Index("ix_audit_log_time", audit_log.c.time)

# ---------------------------------------------------------------- worker
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker_id", Text, primary_key=True),
    Column("hostname", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    _ts("started_at", nullable=False),
    _ts("last_seen", nullable=False),
    _jsonb("status"),
)

# Work split across workers (monitoring_core.sharding): the cycle in which an item (an alert
# rule, a collector) was last claimed, and by whom; one claim per item and cycle.
shard_claims = Table(
    "shard_claims",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("item_id", BigInteger, primary_key=True),
    Column("cycle", BigInteger, nullable=False),
    Column("worker_id", Text, nullable=False),
    _ts("claimed_at", nullable=False),
)

# Requests and points per key, counted by every API process (monitoring_core.api.shared_limits):
# monotonic totals each process adds its own use to once a second, reading the others'.
key_usage = Table(
    "key_usage",
    metadata,
    Column("kind", Text, primary_key=True),  # requests | points
    Column("key_id", BigInteger, primary_key=True),
    Column("total", BigInteger, nullable=False),
    _ts("updated_at", nullable=False),
)

# UI sign-ins that survive a reload (monitoring_core.sessions): the browser holds a random
# token in a cookie; only its SHA-256 is stored. Ended by signing out, idling or expiring.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column(
        "user_id",
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _ts("created_at", nullable=False),
    _ts("last_seen_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("ended_at"),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job", Text, nullable=False),
    Column("worker_id", Text),
    _ts("started_at", nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
)
Index("ix_job_runs_job_started", job_runs.c.job, job_runs.c.started_at)

# Acknowledge links that have been used (their token id): a link works once.
ack_link_uses = Table(
    "ack_link_uses",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # alert | incident
    Column("target_id", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    _ts("used_at", nullable=False, now=True),
)

# Failed sign-ins per user name and per client address (monitoring_core.accounts.sign_in):
# a run of failures, shared by every UI process, forgotten an hour after its last failure.
login_failures = Table(
    "login_failures",
    metadata,
    Column("kind", Text, primary_key=True),  # user | address
    Column("subject", Text, primary_key=True),  # the name as typed, or the address
    Column("failures", Integer, nullable=False),
    _ts("last_failure_at", nullable=False),
)

PARTITIONED_TABLES: tuple[str, ...] = (
    "metric_points",
    "api_timings",
    "web_vitals",
    "error_events",
    "business_events",
    "spans",
    "log_records",
    "metric_histograms",
)

# Citus (docs/SCALING.md): the distribution column of every high-volume table, and the small
# tables every node keeps a copy of. tests/test_citus_ready.py checks what Citus needs: each
# primary key and unique constraint of a distributed table includes its column, foreign keys
# between distributed tables join on it, and SQL joins two distributed tables only on it.
DISTRIBUTED_TABLES: dict[str, str] = {
    "metric_points": "series_id",
    "metric_chunks": "series_id",
    "metric_rollup_1m": "series_id",
    "metric_rollup_1h": "series_id",
    "metric_rollup_6h": "series_id",
    "metric_rollup_1d": "series_id",
    "metric_histograms": "series_id",
    "api_timings": "endpoint",
    "api_timing_packs": "endpoint",
    "api_rollup_1m": "endpoint",
    "api_rollup_1h": "endpoint",
    "api_rollup_6h": "endpoint",
    "api_rollup_1d": "endpoint",
    "web_vitals": "page_route",
    "web_vitals_rollup_1h": "page_route",
    "web_vitals_rollup_1d": "page_route",
    "error_events": "group_id",
    "error_group_members": "group_id",
    "error_event_ids": "event_id",
    "business_events": "user_id",
    "spans": "trace_id",
    "log_records": "trace_id",
}
# Distribution columns that may still be NULL (Citus refuses a NULL distribution value): events
# of anonymous visitors and logs outside any trace. docs/SCALING.md says what to do first.
NULLABLE_DISTRIBUTION: dict[str, str] = {
    "business_events": "anonymous events have no user_id",
    "log_records": "logs written outside a trace have no trace_id",
}
# Small tables joined with distributed ones: a copy on every node.
REFERENCE_TABLES: tuple[str, ...] = ("metric_series", "metric_catalog", "error_groups")
