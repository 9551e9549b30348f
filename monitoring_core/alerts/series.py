"""Series for the engine, read through `metrics_query` and the errors domain's
`error_count_series`; nothing here reads a rollup table itself.

A `SeriesReader` lives for one evaluation cycle and shares reads between rules:
- rules are grouped by (metric, aggregation, dims) where dims = group_by ∪ filter names, so
  a rule filtered to `{"k": "a"}` and one grouped by `k` use the same read (each group of
  the read is exactly one alert key of each rule: values stay exact);
- windows up to `RAW_MAX` are computed from raw points (`raw.read_raw`: one statement for
  every metric of the cycle, bucketed in numpy) in 10-second buckets: exact, and free of the rollups' 15–30 s lag — that is
  what lets a breach reach the webhook within seconds. A metric with more than `RAW_LIMIT`
  raw points in that span falls back to the rollups;
- longer windows read 1-minute rollups (`query_metric`) with the newest minutes replaced by
  raw buckets; anomaly rules read the current hour so far and the same minutes of that hour
  in past weeks, stamped with the hour's start, so the current hour lines up with the same
  hour of past weeks (in an hour's first `engine.HOUR_GRACE`, before its first minute is
  rolled up, the hour just ended as well).
A bucket's point is stamped with its end (the current, partial bucket with `now`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from monitoring_core.alerts.engine import HOUR_GRACE, MINUTE_SETTLED, Columns, Point
from monitoring_core.alerts.raw import RawMetric, bucket, bucketed, read_raw
from monitoring_core.alerts.rules import Rule
from monitoring_core.alerts.signals import signal
from monitoring_core.alerts.signals_read import SignalKey, SignalReader
from monitoring_core.errors.queries import error_count_series
from monitoring_core.metrics_query import query_metric
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = [
    "RAW_MAX",
    "RAW_STEP",
    "RAW_TAIL",
    "FetchKey",
    "Grouped",
    "Keyed",
    "SeriesReader",
    "alert_key",
    "fetch",
    "fetch_key",
    "for_rule",
    "long_window",
    "lookback",
]

MINUTE, HOUR, WEEK = timedelta(minutes=1), timedelta(hours=1), timedelta(days=7)
_EPOCH, _US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
RAW_STEP = timedelta(seconds=10)
RAW_MAX = timedelta(minutes=20)  # windows up to this long are read from raw points
RAW_TAIL = timedelta(minutes=2)  # longer windows: rollups, with this tail from raw points
RAW_LIMIT = 100_000


@dataclass(frozen=True)
class FetchKey:
    kind: str  # minute|hour|pattern
    metric: str
    aggregation: str
    dims: tuple[str, ...]
    filters: str = "{}"  # JSON; only pattern reads filter in SQL
    window: timedelta = timedelta(0)  # kind signal: what each value covers
    mode: str = ""  # kind signal: the rule type (how the stamps are chosen)
    weeks: int = 0  # kind signal, anomaly: the baseline's depth
    min_count: int = 0  # kind signal: fewer events in a window give no value
    contains: str = ""  # kind signal, logs.lines: the body_contains filter (read in SQL)
    # kind minute: a window longer than RAW_MAX (rollups, the newest minutes raw). Never one
    # read with short windows: a 5-minute rule sharing a 30-minute rule's read was decided on
    # rollup minutes instead of raw buckets, its value depending on the other rule
    long: bool = False


# dims values -> points, oldest first
Grouped = dict[tuple[str, ...], Sequence[Point]]
# alert key -> (dimensions, points)
Keyed = dict[str, tuple[dict[str, str], Sequence[Point]]]


def alert_key(group_by: Sequence[str], values: Sequence[Any]) -> str:
    """`endpoint=/api/x,method=GET`; empty for a rule without group_by."""
    return ",".join(f"{name}={value}" for name, value in zip(group_by, values, strict=True))


def fetch_key(rule: Rule) -> FetchKey | None:
    cond = rule.condition
    if cond.type == "pattern":  # error events, filtered and counted by errors.queries
        filters = json.dumps(dict(cond.filters), sort_keys=True)
        return FetchKey("pattern", "error_events", "count", cond.group_by, filters)
    if cond.type == "composite" or not cond.metric:
        return None
    dims = tuple(sorted(set(cond.group_by) | set(cond.filters)))
    built_in = signal(cond.metric)
    if built_in is not None and built_in.windowed:  # read by signals_read, see there
        return FetchKey(
            "signal",
            cond.metric,
            cond.aggregation,
            dims,
            window=_signal_window(rule),
            mode=cond.type,
            weeks=cond.weeks,
            min_count=cond.min_count,
            contains=str(cond.filters.get("body_contains", "")),
        )
    metric = built_in.metric if built_in is not None and built_in.metric else cond.metric
    kind = "hour" if cond.type == "anomaly" else "minute"
    long = kind == "minute" and lookback(rule) > RAW_MAX
    return FetchKey(kind, metric, cond.aggregation, dims, long=long)


def _signal_window(rule: Rule) -> timedelta:
    """What one value of a windowed signal covers: the rule's window (an hour for anomaly,
    whose baseline is the same hour of past weeks); for absence what a cycle reads, two
    minutes more than the window (as `lookback` for a metric), so that a group fallen silent
    is read and found silent before it drops out of the read."""
    cond = rule.condition
    if cond.type == "anomaly":
        return HOUR
    if cond.type == "absence":
        return timedelta(minutes=cond.window_minutes) + 2 * MINUTE
    return timedelta(minutes=cond.window_minutes)


def signal_key(key: FetchKey) -> SignalKey:
    return SignalKey(
        key.metric,
        key.aggregation,
        key.dims,
        key.window,
        key.mode,
        key.weeks,
        key.min_count,
        key.contains,
    )


def lookback(rule: Rule) -> timedelta:
    cond = rule.condition
    if cond.type == "anomaly":
        return cond.weeks * timedelta(days=7) + 2 * HOUR
    window = timedelta(minutes=cond.window_minutes)
    if cond.type in ("threshold", "pattern"):  # the engine looks at the window only
        return window
    # rate of change needs the point at or before now − window; absence asks "any point
    # within the window?": 2 minutes more answers both, and keeps short heartbeat windows
    # on the shared raw read
    return window + 2 * MINUTE


def for_rule(rule: Rule, key: FetchKey, grouped: Grouped) -> Keyed:
    """The groups of a shared read that belong to this rule, by its alert keys."""
    cond = rule.condition
    if key.kind == "pattern":
        return {
            alert_key(cond.group_by, v): (dict(zip(cond.group_by, v, strict=True)), pts)
            for v, pts in grouped.items()
        }
    wanted = [(key.dims.index(name), str(value)) for name, value in cond.filters.items()]
    picks = [key.dims.index(name) for name in cond.group_by]
    items: Any = grouped.items()
    if len(wanted) == 1:  # the common cases first (a cycle cuts a few thousand reads)
        ((at, value),) = wanted
        items = [(values, points) for values, points in items if values[at] == value]
    elif wanted:
        items = [(vs, pts) for vs, pts in items if all(vs[i] == v for i, v in wanted)]
    if len(picks) == 1:
        (at,), (name,) = picks, cond.group_by
        return {f"{name}={values[at]}": ({name: values[at]}, points) for values, points in items}
    out: Keyed = {}
    for values, points in items:
        mine = [values[i] for i in picks]
        out[alert_key(cond.group_by, mine)] = (dict(zip(cond.group_by, mine, strict=True)), points)
    return out


def frame_groups(frame: pd.DataFrame, dims: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Each row's group of a `query_metric` frame: its `dims` values as strings (`()` for
    every row when there are none)."""
    if not dims:
        return iter(tuple, None)
    return zip(*(frame[d].astype(str).tolist() for d in dims), strict=True)


def _py_times(column: pd.Series) -> list[datetime]:
    return list(pd.to_datetime(column, utc=True).dt.to_pydatetime())


@dataclass
class SeriesReader:
    """Shared reads for one evaluation cycle at `now`.

    `raw_spans` says how far back each metric's raw points are needed; `prefetch` reads them
    all in one statement (`raw.read_raw`); a metric read later on its own is read then.
    """

    conn: Connection
    now: datetime
    raw_spans: dict[str, timedelta] = field(default_factory=dict)  # per metric; default RAW_MAX
    step: timedelta | None = None  # a backtest's step: windowed signals at every step
    signals: SignalReader | None = None
    raw_cache: dict[str, RawMetric | None] = field(default_factory=dict)  # None: over RAW_LIMIT
    tail_cache: dict[str, RawMetric | None] = field(default_factory=dict)
    views: bool = False  # raw windows as `engine.Points` views of one block per read
    _stamps: dict[datetime, list[datetime]] = field(default_factory=dict)
    _stamps_us: dict[datetime, np.ndarray] = field(default_factory=dict)

    def _since(self, span: timedelta) -> datetime:
        return floor_to(self.now - span, MINUTE)

    def prefetch(self) -> None:
        """Read the raw points of every metric in `raw_spans` at once."""
        wanted = {
            m: self._since(span) for m, span in self.raw_spans.items() if m not in self.raw_cache
        }
        self.raw_cache.update(read_raw(self.conn, wanted, now=self.now, limit=RAW_LIMIT))

    def _raw(self, metric: str) -> RawMetric | None:
        if metric not in self.raw_cache:
            since = {metric: self._since(self.raw_spans.get(metric, RAW_MAX))}
            self.raw_cache.update(read_raw(self.conn, since, now=self.now, limit=RAW_LIMIT))
        return self.raw_cache[metric]

    def _tail(self, metric: str, since: datetime) -> RawMetric | None:
        """Raw points since `since` (the newest minutes of a rollup read)."""
        raw = self._raw(metric)
        if raw is not None:
            return raw
        if metric not in self.tail_cache:  # too many for the full span: the tail alone
            tail = read_raw(self.conn, {metric: since}, now=self.now, limit=RAW_LIMIT)
            self.tail_cache[metric] = tail[metric]
        return self.tail_cache[metric]

    def _raw_points(self, key: FetchKey, raw: RawMetric | None, since: datetime) -> Grouped:
        """10-second buckets of raw points from `since`, stamped with their end (or `now`)."""
        if raw is None:
            return {}
        if since not in self._stamps:
            count = int((self.now - since) / RAW_STEP) + 2
            self._stamps[since] = [min(since + (i + 1) * RAW_STEP, self.now) for i in range(count)]
        stamps = self._stamps[since]
        if self.views:  # arrays the engine checks every key of a rule from at once
            names, starts, numbers, values = bucketed(
                raw, dims=key.dims, aggregation=key.aggregation, since=since, step=RAW_STEP
            )
            if since not in self._stamps_us:
                self._stamps_us[since] = np.array([(x - _EPOCH) // _US for x in stamps])
            block = Columns(stamps, numbers, self._stamps_us[since][numbers], values, starts)
            return dict(zip(names, block.series(), strict=True))
        grouped = bucket(
            raw, dims=key.dims, aggregation=key.aggregation, since=since, step=RAW_STEP
        )
        return {
            values: list(map(Point._make, zip(map(stamps.__getitem__, numbers), xs, strict=True)))
            for values, (numbers, xs) in grouped.items()
        }

    def _rollups(self, key: FetchKey, tr: TimeRange) -> dict[tuple, dict[datetime, float]]:
        frame = query_metric(
            self.conn,
            metric_name=key.metric,
            aggregation=key.aggregation,
            interval="1h" if key.kind == "hour" else "1m",
            tr=tr,
            group_by=list(key.dims),
        )
        out: dict[tuple, dict[datetime, float]] = defaultdict(dict)
        if not len(frame):
            return out
        for values, bucket_at, value in zip(
            frame_groups(frame, key.dims), _py_times(frame["bucket"]), frame["value"].tolist(),
            strict=False,
        ):  # fmt: skip
            if value == value:  # not NaN
                out[values][bucket_at] = float(value)
        return out

    def _hours(self, key: FetchKey, span: timedelta) -> Grouped:
        """The current hour so far and the same part of that hour in each past week in `span`
        (its whole minutes [hour, hour + elapsed), so a partial hour is compared with partial
        hours: an hour's first minutes against full past hours made every start of an hour
        look like an anomaly, a count so far always "below"), each stamped with the hour's
        start (the engine's anomaly check compares exactly these). In an hour's first
        `engine.HOUR_GRACE`, the hour before each of those too, whole. Reading only those
        hours keeps an anomaly rule over 4 weeks at 5 small reads instead of 672 rows per
        group."""
        hour = floor_to(self.now, HOUR)
        # whole minutes only (`engine.MINUTE_SETTLED`), none before the hour
        elapsed = max(floor_to(self.now - MINUTE_SETTLED, MINUTE) - hour, timedelta(0))
        before = HOUR if self.now - hour < HOUR_GRACE else timedelta(0)
        points: dict[tuple, list[Point]] = defaultdict(list)
        for weeks_back in range(int((span - HOUR) / WEEK), -1, -1):
            start = hour - weeks_back * WEEK
            wanted = {start - before, start}
            tr = TimeRange(start - before, start + elapsed)
            for values, buckets in self._rollups(key, tr).items():
                points[values].extend(
                    Point(b, x) for b, x in sorted(buckets.items()) if b in wanted
                )
        return dict(points)

    def _pattern(self, key: FetchKey, span: timedelta) -> Grouped:
        counts = error_count_series(
            self.conn,
            start=self.now - span,
            end=self.now + timedelta(microseconds=1),  # its end is exclusive
            filters=json.loads(key.filters),
            group_by=list(key.dims),
            interval=RAW_STEP,
        )
        return {v: [Point(min(b, self.now), float(n)) for b, n in pts] for v, pts in counts.items()}

    def reads_database(self, key: FetchKey, span: timedelta) -> bool:
        """Whether `fetch` will run SQL (after `prefetch`, short raw windows do not)."""
        short = key.kind == "minute" and span <= RAW_MAX
        return not short or self.raw_cache.get(key.metric) is None

    def _signals(self, span: timedelta) -> SignalReader:
        if self.signals is None:
            start = self.now - span if self.step is not None else None
            self.signals = SignalReader(self.conn, self.now, step=self.step, start=start)
        return self.signals

    def want_signals(self, spans: dict[FetchKey, timedelta]) -> None:
        """Announce a cycle's windowed-signal keys: each family is then read once."""
        for key, span in spans.items():
            if key.kind == "signal":
                self._signals(span).want(signal_key(key))

    def fetch(self, key: FetchKey, span: timedelta) -> Grouped:
        """Points per group of `key.dims` over [now − span, now]."""
        if key.kind == "signal":
            return dict(self._signals(span).fetch(signal_key(key)))
        if key.kind == "pattern":
            return self._pattern(key, span)
        now = self.now
        if key.kind == "minute" and span <= RAW_MAX:
            raw = self._raw(key.metric)
            if raw is not None:
                return self._raw_points(key, raw, floor_to(now - span, RAW_STEP))
        if key.kind == "hour":
            return self._hours(key, span)
        raw_from = floor_to(now - RAW_TAIL, MINUTE)
        tail = self._raw_points(key, self._tail(key.metric, raw_from), raw_from)
        return long_window(self._rollups(key, TimeRange(now - span, now)), tail, raw_from, now)


def long_window(
    rollups: dict[tuple, dict[datetime, float]], tail: Grouped, raw_from: datetime, now: datetime
) -> Grouped:
    """A long window's series: the 1-minute rollups before `raw_from`, each stamped with its
    minute's end, then the raw tail's 10-second buckets (the live cycle, and a backtest at
    each of its steps)."""
    points: dict[tuple, list[Point]] = defaultdict(list)
    for values, buckets in rollups.items():
        points[values].extend(
            Point(min(b + MINUTE, now), x) for b, x in sorted(buckets.items()) if b < raw_from
        )
    for values, tail_points in tail.items():
        points[values].extend(tail_points)
    return {v: pts for v, pts in points.items() if pts}


def fetch(
    conn: Connection,
    key: FetchKey,
    *,
    span: timedelta,
    now: datetime,
    step: timedelta | None = None,
) -> Grouped:
    """One read outside a cycle (the rule test against history uses it, with its `step`)."""
    return SeriesReader(conn, now, step=step).fetch(key, span)
