"""Metric points: validation, series id resolution (cached) and binary COPY of the points.

Cardinality cap: `write_metrics(..., max_series_per_metric=N)` refuses a batch whose NEW
series would take a metric past N series (`SeriesLimitExceeded`, an `InvalidItems`: the API
answers 422 and the transaction stores nothing). Series that exist stay writable past the cap
(a cap lowered later never cuts off a running metric). The count costs nothing on the
SeriesCache hit path: only a batch with keys missing from the cache looks up which of them
exist, and only a batch that creates series counts, under a per-metric transaction-scoped
advisory lock so that concurrent writers cannot together overshoot the cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

from monitoring_core.ingest.copy import copy_columns
from monitoring_core.ingest.validate import (
    MAX_MAGNITUDE,
    InvalidItems,
    ItemChecker,
    ItemError,
    Limits,
    json_type,
    parse_timestamp,
)

__all__ = [
    "METRIC_FIELDS",
    "MetricBatch",
    "SeriesCache",
    "SeriesLimitExceeded",
    "dimensions_key",
    "resolve_series",
    "validate_metrics",
    "write_metrics",
]

METRIC_FIELDS = frozenset(
    {"metric_name", "metric_value", "timestamp", "dimensions", "source_system"}
)
MAX_DIMENSIONS = 32
SeriesKey = tuple[str, bytes]  # (name, dimensions as canonical JSON)


def dimensions_key(dims: Mapping[str, Any]) -> bytes:
    """Dimensions as canonical JSON (sorted keys), in a bytes object of its own size.

    orjson's result keeps the ~4 KB buffer it was written into (measured with orjson 3.13:
    tracemalloc 4,097 B for a 55-byte result); a series key lives on in the series cache and
    the Pushgateway's memo, so 160,000 keys took ~330 MB. The copy costs ~0.1 µs.
    """
    return bytes(memoryview(orjson.dumps(dims, option=orjson.OPT_SORT_KEYS)))


_FAST_DIMS_BYTES = 100


@dataclass
class MetricBatch:
    """Valid points: parallel lists, plus each new series' dimensions and source."""

    keys: list[SeriesKey]
    times: list[datetime]
    values: list[float]
    sources: dict[SeriesKey, str | None]

    def __len__(self) -> int:
        return len(self.values)


def _dimensions(check: ItemChecker, raw: Any, index: int) -> dict[str, str] | None:
    """Dimension values as strings (Prometheus labels are strings: 200 and "200" are one series)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        check.fail(index, "dimensions", f"must be an object, got {json_type(raw)}")
        return None
    if len(raw) > MAX_DIMENSIONS:
        check.fail(index, "dimensions", f"has more than {MAX_DIMENSIONS} keys")
        return None
    clean: dict[str, str] = {}
    for key, value in raw.items():
        field = f"dimensions.{key}"
        if not key or len(key) > 100 or "\x00" in key:
            check.fail(index, field, "keys must be 1 to 100 characters without NUL")
            return None
        if isinstance(value, str):
            clean[key] = value
        elif isinstance(value, bool):
            clean[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            clean[key] = orjson.dumps(value).decode()
        else:
            check.fail(index, field, f"must be a string or number, got {json_type(value)}")
            return None
        if len(clean[key]) > 500 or "\x00" in clean[key]:
            check.fail(index, field, "must be at most 500 characters without NUL")
            return None
    return clean


def _fast_point(
    item: Mapping[str, Any],
    limits: Limits,
    now: datetime,
    memo: dict[tuple[Any, ...], SeriesKey],
) -> tuple[SeriesKey, datetime, float, str | None] | None:
    """The common, valid case checked in one pass; None sends the item to full validation.

    `memo` maps (name, dimension items) already validated in this batch to their series key,
    so repeated series cost a tuple and a dict lookup instead of a sorted JSON encoding.
    """
    name = item.get("metric_name")
    value: Any = item.get("metric_value")
    dims = item.get("dimensions")
    source = item.get("source_system")
    stamp = item.get("timestamp")
    if not (
        item.keys() <= METRIC_FIELDS
        and type(value) in (float, int)
        and (
            source is None or (type(source) is str and len(source) <= 100 and "\x00" not in source)
        )
    ):
        return None
    try:
        memo_key = (name, *dims.items()) if type(dims) is dict else (name, dims)
        key = memo.get(memo_key)
    except TypeError:  # an unhashable value (list, object): full validation explains it
        return None
    if key is None:
        key = _fast_series_key(name, dims)
        if key is None:
            return None
        memo[memo_key] = key
    number = float(value)
    if not -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE:  # also False for NaN and infinities
        return None
    if stamp is None:
        moment = now
    else:
        try:
            moment = parse_timestamp(stamp, default=now)
        except ValueError:
            return None
        if not limits.oldest <= moment <= limits.newest:
            return None
    return key, moment, number, source


def _fast_series_key(name: Any, dims: Any) -> SeriesKey | None:
    """The series key when name and dimensions are plainly valid (string values only).

    A canonical encoding of at most _FAST_DIMS_BYTES cannot break the per-key (100) or
    per-value (500) limits, and orjson writes NUL as the escape `\\u0000`.
    """
    if type(name) is not str or not 0 < len(name) <= 200 or "\x00" in name or not name.strip():
        return None
    if dims is None:
        dims = {}
    elif type(dims) is not dict or "" in dims or len(dims) > MAX_DIMENSIONS:
        return None
    elif not all(type(v) is str for v in dims.values()):
        return None
    encoded = dimensions_key(dims)
    if len(encoded) > _FAST_DIMS_BYTES or b"\\u0000" in encoded:
        return None
    return name, encoded


def validate_metrics(
    items: Sequence[Mapping[str, Any]], *, limits: Limits, now: datetime
) -> MetricBatch:
    """Clean points, or InvalidItems naming every bad item's index and field."""
    check = ItemChecker(limits, now)
    batch = MetricBatch([], [], [], {})
    keys, times, values, sources = batch.keys, batch.times, batch.values, batch.sources
    memo: dict[tuple[Any, ...], SeriesKey] = {}
    for index, item in enumerate(items):
        point = _fast_point(item, limits, now, memo)
        if point is None:
            point = _checked_point(check, item, index)
        if point is None or check.errors:
            continue  # once anything failed, the batch is rejected: stop building rows
        key, moment, value, source = point
        keys.append(key)
        times.append(moment)
        values.append(value)
        if key not in sources:
            sources[key] = source
    check.raise_if_any()
    return batch


def _checked_point(
    check: ItemChecker, item: Mapping[str, Any], index: int
) -> tuple[SeriesKey, datetime, float, str | None] | None:
    """Every field checked one by one, each problem recorded with its field."""
    check.keys(item, METRIC_FIELDS, index)
    name = check.text(item, index, "metric_name", required=True)
    value = check.number(item, index, "metric_value", required=True)
    moment = check.time(item, index)
    dims = _dimensions(check, item.get("dimensions"), index)
    source = check.text(item, index, "source_system", max_len=100)
    if name is None or value is None or moment is None or dims is None:
        return None
    return (name, dimensions_key(dims)), moment, value, source


class SeriesCache:
    """Series ids by (name, dimensions); fill it only after the transaction committed.

    Emptied every `max_age_s`: retention deletes series that received nothing for days
    (`metric_series_idle`), and an id remembered longer than that would send points to a
    deleted series.
    """

    def __init__(
        self,
        # ~250 B a key: 250,000 keys ~60 MB of the API's 300 MB budget (#13); past it the
        # cache starts again and misses are looked up in one statement per batch.
        max_entries: int = 250_000,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ids: dict[SeriesKey, int] = {}
        self._max = max_entries
        self._lock = threading.Lock()
        self._max_age, self._clock = max_age_s, clock
        self._born = clock()

    def get(self, key: SeriesKey) -> int | None:
        if self._clock() - self._born > self._max_age:
            with self._lock:
                self._ids.clear()
                self._born = self._clock()
        return self._ids.get(key)

    def update(self, ids: Mapping[SeriesKey, int]) -> None:
        with self._lock:
            if len(self._ids) + len(ids) > self._max:
                self._ids.clear()
            self._ids.update(ids)


class SeriesLimitExceeded(InvalidItems):
    """New series would take `metric` to `would_have` series, more than `limit` allows."""

    def __init__(
        self, metric: str, would_have: int, limit: int, key: SeriesKey, index: int | None = None
    ) -> None:
        self.metric, self.would_have, self.limit, self.key = metric, would_have, limit, key
        self.message = f"metric {metric!r} would have {would_have} series; the limit is {limit}"
        super().__init__([ItemError(index, "dimensions", self.message)])


# Series keys travel as one JSON document (`_keys_json`): as text[]/jsonb[] arrays, psycopg
# escaped every quote of every dimensions document with a regex callback, which cost ~1 ms a
# series and ~8 KB of transient memory each on a 10,000-series push.
_EXISTING_SERIES = text(
    """
    SELECT i.ord, s.id FROM metric_series s
    JOIN ROWS FROM (jsonb_to_recordset(CAST(:keys AS jsonb)) AS (name text, dimensions jsonb))
        WITH ORDINALITY AS i(name, dimensions, ord)
      ON s.name = i.name AND s.dimensions = i.dimensions
    """
)
# Two-key advisory locks have their own key space, apart from the jobs' one-key locks.
_LOCK_METRICS = text(
    """
    SELECT pg_advisory_xact_lock(hashtext('metric_series'), k) FROM (
        SELECT DISTINCT hashtext(n) AS k FROM unnest(CAST(:names AS text[])) AS n ORDER BY k
    ) AS keys
    """
)
_COUNT_SERIES = text(
    "SELECT name, count(*) AS n FROM metric_series WHERE name = ANY(CAST(:names AS text[])) "
    "GROUP BY name"
)


def _keys_json(
    keys: Sequence[SeriesKey], sources: Mapping[SeriesKey, str | None] | None = None
) -> str:
    """`[{"name": …, "dimensions": {…}, "source_system": …}, …]`: the dimensions are already
    canonical JSON, so the document is joined from bytes without re-encoding them."""
    names: dict[str, bytes] = {}
    parts = []
    for key in keys:
        name = names.get(key[0])
        if name is None:
            name = names[key[0]] = b'{"name":' + orjson.dumps(key[0]) + b',"dimensions":'
        if sources is None:
            parts.append(name + key[1] + b"}")
        else:
            parts.append(name + key[1] + b',"source_system":' + orjson.dumps(sources[key]) + b"}")
    return (b"[" + b",".join(parts) + b"]").decode()


def _existing(conn: Connection, keys: list[SeriesKey]) -> dict[SeriesKey, int]:
    rows = conn.execute(_EXISTING_SERIES, {"keys": _keys_json(keys)})
    return {keys[row.ord - 1]: row.id for row in rows}  # no dimensions decoded and re-encoded


def _check_cardinality(
    conn: Connection, missing: list[SeriesKey], limit: int
) -> dict[SeriesKey, int]:
    """Ids of the `missing` keys that exist; raises SeriesLimitExceeded when the new ones
    would take a metric past `limit` series (the locks are held until the transaction ends).

    Only a batch that creates series takes the metrics' locks; once it holds them, the
    candidates are looked up again (READ COMMITTED: a fresh snapshot sees what a writer that
    held the lock before committed), so a series is never counted twice.
    """
    existing = _existing(conn, missing)
    new = [key for key in missing if key not in existing]
    if not new:
        return existing
    names = sorted({key[0] for key in new})
    conn.execute(_LOCK_METRICS, {"names": names}).all()
    existing.update(_existing(conn, new))
    new_by_name: dict[str, list[SeriesKey]] = {}
    for key in new:
        if key not in existing:
            new_by_name.setdefault(key[0], []).append(key)
    counts = {row.name: row.n for row in conn.execute(_COUNT_SERIES, {"names": names})}
    for name in sorted(new_by_name):
        would_have = counts.get(name, 0) + len(new_by_name[name])
        if would_have > limit:
            raise SeriesLimitExceeded(name, would_have, limit, new_by_name[name][0])
    return existing


_UPSERT_SERIES = text(
    """
    WITH input AS (
        SELECT * FROM ROWS FROM (jsonb_to_recordset(CAST(:keys AS jsonb))
            AS (name text, dimensions jsonb, source_system text))
            WITH ORDINALITY AS t(name, dimensions, source_system, ord)
    ), inserted AS (
        INSERT INTO metric_series (name, dimensions, source_system)
        SELECT name, dimensions, source_system FROM input
        ON CONFLICT (name, dimensions) DO NOTHING
        RETURNING id, name, dimensions
    )
    SELECT i.ord, x.id FROM inserted x
    JOIN input i ON x.name = i.name AND x.dimensions = i.dimensions
    UNION ALL
    SELECT i.ord, s.id FROM metric_series s
    JOIN input i ON s.name = i.name AND s.dimensions = i.dimensions
    """
)


def resolve_series(
    conn: Connection,
    sources: Mapping[SeriesKey, str | None],
    cache: SeriesCache,
    *,
    max_series_per_metric: int | None = None,
) -> tuple[dict[SeriesKey, int], dict[SeriesKey, int]]:
    """(ids of every key, ids that were not cached yet); new series are inserted.

    With `max_series_per_metric`, SeriesLimitExceeded (index None) before anything is inserted
    when the new series would take a metric past that many series.
    """
    ids: dict[SeriesKey, int] = {}
    missing: list[SeriesKey] = []
    for key in sources:
        cached = cache.get(key)
        if cached is None:
            missing.append(key)
        else:
            ids[key] = cached
    fresh: dict[SeriesKey, int] = {}
    if missing and max_series_per_metric is not None:
        fresh = _check_cardinality(conn, missing, max_series_per_metric)
        missing = [key for key in missing if key not in fresh]
    # A concurrent transaction may insert the same series: ON CONFLICT waits for it, but this
    # statement's snapshot predates its commit, so a second pass picks up what is still missing.
    for _ in range(3):
        if not missing:
            break
        rows = conn.execute(_UPSERT_SERIES, {"keys": _keys_json(missing, sources)})
        fresh.update({missing[row.ord - 1]: row.id for row in rows})
        missing = [key for key in missing if key not in fresh]
    if missing:
        raise RuntimeError(f"could not resolve {len(missing)} metric series")
    ids.update(fresh)
    return ids, fresh


def _canonical(dimensions: Mapping[str, Any]) -> bytes:
    return dimensions_key(dimensions)


def write_metrics(
    conn: Connection,
    batch: MetricBatch,
    cache: SeriesCache,
    *,
    max_series_per_metric: int | None = None,
) -> dict[SeriesKey, int]:
    """COPY the points in the caller's transaction; returns series ids to cache after commit.

    SeriesLimitExceeded (naming the first point of a new series of the metric) when the batch
    would take a metric past `max_series_per_metric` series; None: no cap (internal writers).
    The caller must roll back (the API's `engine.begin()` does): nothing is stored then.
    """
    try:
        ids, fresh = resolve_series(
            conn, batch.sources, cache, max_series_per_metric=max_series_per_metric
        )
    except SeriesLimitExceeded as exc:
        index = batch.keys.index(exc.key)
        raise SeriesLimitExceeded(exc.metric, exc.would_have, exc.limit, exc.key, index) from None
    copy_columns(
        conn,
        "metric_points",
        ("time", "series_id", "value"),
        ("timestamptz", "int8", "float8"),
        (batch.times, [ids[key] for key in batch.keys], batch.values),
    )
    return fresh
