"""The evaluation cycle: every enabled rule, in one transaction, then the escalation climb.

For each rule and alert key the pure engine decides; this module stores the decision (one
instance per rule and key, history in alert_events), writes notifications into the outbox
in the same transaction (unless a silence covers the alert), opens an incident for a
critical alert that starts firing, and notes acknowledgements and resolutions on it.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, BigInteger, Connection, Engine, any_, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.engine import (
    AlertState,
    Decision,
    Known,
    Point,
    Points,
    evaluate_keys,
)
from monitoring_core.alerts.last_seen import last_point, newest_points
from monitoring_core.alerts.promql_rules import promql_decisions
from monitoring_core.alerts.rules import WEDDING_CRITICAL_SERVICES, Rule, RuleInvalid, rule_from_row
from monitoring_core.alerts.silences import alert_labels, is_silenced, list_silences
from monitoring_core.alerts.store import (
    RuleRow,
    enabled_rule_rows,
    load_states,
    mark_data_seen,
    state_of,
)
from monitoring_core.alerts.writes import DecisionWrite, only_counted, save_decisions
from monitoring_core.audit import system_actor
from monitoring_core.config import load_settings
from monitoring_core.incidents.rules import severity_for_alert
from monitoring_core.incidents.store import add_timeline_entry, open_incident
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import render_alert
from monitoring_core.oncall.routing import route_channels
from monitoring_core.prometheus.promql.model import QueryError
from monitoring_core.schema import (
    alert_instances,
    incidents,
    notification_channels,
    worker_heartbeats,
)
from monitoring_core.sharding import claim

__all__ = [
    "Cycle",
    "EvalReport",
    "evaluate_all",
    "flush_notifications",
    "notify_alert",
    "run_evaluation",
    "running_since",
]

log = logging.getLogger(__name__)
WORKER_LIVE = timedelta(minutes=2)  # a worker not seen for this long is not running
ACTOR = system_actor("alerting")
_EPOCH, _US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
_NONE = AlertState()


@dataclass
class EvalReport:
    rules: int = 0
    keys: int = 0
    changes: int = 0
    stored: int = 0  # instances written (new values, counts, statuses)
    notifications: int = 0
    silenced: int = 0
    incidents: int = 0
    invalid: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    def merged(self, other: EvalReport) -> EvalReport:
        """Both reports' counts (a worker's own share and the orphans it took after)."""
        return EvalReport(
            self.rules + other.rules,
            self.keys + other.keys,
            self.changes + other.changes,
            self.stored + other.stored,
            self.notifications + other.notifications,
            self.silenced + other.silenced,
            self.incidents + other.incidents,
            self.invalid + other.invalid,
            self.errors + other.errors,
            self.duration_ms + other.duration_ms,
        )

    def summary(self) -> str:
        return (
            f"{self.rules} rules, {self.keys} keys, {self.changes} changes, "
            f"{self.stored} instances written, "
            f"{self.notifications} notifications ({self.silenced} silenced), "
            f"{self.incidents} incidents, {len(self.invalid)} invalid, "
            f"{len(self.errors)} errors in {self.duration_ms:.0f} ms"
        )


@dataclass
class Cycle:
    conn: Connection
    now: datetime
    tz: ZoneInfo
    public_url: str
    rows: dict[int, dict[str, Any]]
    silences: list[dict[str, Any]]
    report: EvalReport
    holds: dict[int, bool | None] = field(default_factory=dict)
    pending: list[tuple[Rule, DecisionWrite, dict[str, Any] | None]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # rows not yet written
    saw_data: list[int] = field(default_factory=list)  # rules seeing their first data
    running_since: datetime | None = None  # evaluators' start: data must be seen since
    notified: list[int] = field(default_factory=list)  # instances to stamp last_notified_at
    routes: dict[str, list[int]] = field(default_factory=dict)  # severity -> default route's


def running_since(conn: Connection, now: datetime) -> datetime | None:
    """Since when evaluation has run without a break: the start of the longest-running worker
    seen in the last WORKER_LIVE (None without workers, e.g. a cycle run by hand or a test).
    No data is paged only for rules that saw data since then: after a restart, data that
    stopped while nothing watched (or has not arrived yet) is listed, not paged."""
    w = worker_heartbeats.c
    stopped = func.coalesce(w.status["stopping"].as_boolean(), False)  # said goodbye
    live = (w.last_seen >= now - WORKER_LIVE) & ~stopped
    return conn.execute(select(func.min(w.started_at)).where(live)).scalar()


def run_evaluation(
    engine: Engine,
    now: datetime,
    *,
    tz: ZoneInfo | None = None,
    public_url: str | None = None,
    worker_id: str | None = None,
    interval_s: float = 15.0,
) -> EvalReport:
    """One cycle in one transaction (the job's entry point): every enabled rule, or — given
    `worker_id` — this worker's share of them, claimed for the cycle (`sharding.claim`)."""
    if tz is None or public_url is None:
        settings = load_settings()
        tz, public_url = tz or settings.tz, public_url or settings.public_url
    with _collector_paused():
        return _run_evaluation(engine, now, tz, public_url, worker_id, interval_s)


def _run_evaluation(
    engine: Engine,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    worker_id: str | None,
    interval_s: float,
) -> EvalReport:
    if worker_id is None:
        with engine.begin() as conn:
            return evaluate_all(conn, now=now, tz=tz, public_url=public_url)
    report, keys, enabled = None, None, None
    for own in (True, False):  # its own share first, then the orphans still unclaimed
        with engine.begin() as conn:  # a short claim of its own, never held while evaluating
            if keys is None:  # the rules as this cycle reads them (the claim's read serves both)
                enabled = enabled_rule_rows(conn)
                keys = shard_keys([r.row for r in enabled])
            only = claim(conn, kind="alert_rules", keys=keys, worker_id=worker_id, now=now,
                         interval_s=interval_s, own=own, orphans=not own)  # fmt: skip
        if only or report is None:
            with engine.begin() as conn:
                done = evaluate_all(conn, now=now, tz=tz, public_url=public_url,
                                    only=frozenset(only), enabled=enabled)  # fmt: skip
            report = done if report is None else report.merged(done)
    assert report is not None
    return report


def shard_keys(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Each rule's item key for splitting work across workers: its id, except that a
    composite rule and its children (which read each other's results within one cycle) share
    the key of the family's smallest rule id."""
    parent = {int(r["id"]): int(r["id"]) for r in rows}

    def root(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    for row in rows:
        config = row.get("condition_config") or {}
        if isinstance(config, dict) and config.get("type") == "composite":
            for child in config.get("rules") or ():
                if isinstance(child, int) and child in parent:
                    a, b = root(int(row["id"])), root(child)
                    parent[max(a, b)] = min(a, b)
    return {item: str(root(item)) for item in parent}


# Parsed rules by row version (`store.RuleRow`; None: invalid), kept from cycle to cycle.
_PARSED: dict[str, Rule | None] = {}
# ... and by the row's content but for `data_seen_at`: a version that only noted data seen (a
# rule's first data; every rule after a restart) is not parsed again.
_BY_CONTENT: dict[str, Rule | None] = {}


def _content(row: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in row.items() if k != "data_seen_at"}, sort_keys=True, default=str
    )


def _parse(rows: list[RuleRow], report: EvalReport, *, enabled: list[RuleRow]) -> list[Rule]:
    """The rules of `rows`, parsed once per row version; versions no longer among `enabled`
    are forgotten."""
    global _PARSED
    held = _PARSED
    rules = []
    for version, row in rows:
        if version in held:
            rule = held[version]
        elif (content := _content(row)) in _BY_CONTENT:
            rule = held[version] = _BY_CONTENT[content]
        else:
            try:
                rule = rule_from_row(row)
            except (RuleInvalid, ValueError):
                rule = None
            held[version] = _BY_CONTENT[content] = rule
        if rule is None:
            report.invalid.append(int(row["id"]))
        else:
            rules.append(rule)
    if len(held) > len(enabled):
        current = {r.version for r in enabled}
        _PARSED = {version: rule for version, rule in held.items() if version in current}
    if len(_BY_CONTENT) > 2 * len(enabled) + 1000:  # contents since edited away
        _BY_CONTENT.clear()
    return rules


def _fetch_all(cycle: Cycle, rules: list[Rule]) -> dict[Any, series_mod.Grouped]:
    """One read per (metric, aggregation, dims) shared by every rule that needs it."""
    spans: dict[Any, Any] = {}
    for rule in rules:
        key, _how, span = _cut(rule)
        if key is not None:
            spans[key] = max(spans.get(key, span), span)
    reader = series_mod.SeriesReader(cycle.conn, cycle.now, views=True)
    for key, span in spans.items():  # read each metric's raw points once, as far back as needed
        raw_span = span if span <= series_mod.RAW_MAX else series_mod.RAW_TAIL
        if key.kind == "minute":
            reader.raw_spans[key.metric] = max(reader.raw_spans.get(key.metric, raw_span), raw_span)
    reader.want_signals(spans)  # windowed signals: one read per family for every key
    try:
        with cycle.conn.begin_nested():
            reader.prefetch()
    except Exception as exc:  # each fetch below retries its own metric and reports it
        log.warning("raw prefetch failed", exc_info=True)
        cycle.report.errors.append(f"raw prefetch: {type(exc).__name__}: {exc}")
    fetched: dict[Any, series_mod.Grouped] = {}
    for key, span in spans.items():
        try:
            if reader.reads_database(key, span):
                with cycle.conn.begin_nested():  # a failed read must not abort the whole cycle
                    fetched[key] = reader.fetch(key, span)
            else:  # computed from the prefetched points: no savepoint round trips
                fetched[key] = reader.fetch(key, span)
        except Exception as exc:
            log.warning("series fetch %s failed", key, exc_info=True)
            cycle.report.errors.append(f"{key.metric}: {type(exc).__name__}: {exc}")
    return fetched


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A cycle allocates a few hundred thousand short-lived tuples (points), which reference
    counting frees; without this the cyclic collector would also walk the whole heap a few
    hundred times per cycle (a quarter of its time at 1,000 rules)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def evaluate_all(
    conn: Connection,
    *,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    only: frozenset[int] | None = None,
    enabled: list[RuleRow] | None = None,
) -> EvalReport:
    """Evaluate every enabled rule (or those in `only`) at `now` in the caller's transaction;
    `enabled`: the enabled rules as this cycle's claim read them (else read here)."""
    with _collector_paused():
        return _evaluate_all(conn, now, tz, public_url, only, enabled)


def _evaluate_all(
    conn: Connection,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    only: frozenset[int] | None,
    enabled: list[RuleRow] | None,
) -> EvalReport:
    started = time.perf_counter()
    report = EvalReport()
    enabled = listed = enabled if enabled is not None else enabled_rule_rows(conn)
    if only is not None:  # this worker's share (composite families are never split)
        listed = [r for r in listed if int(r.row["id"]) in only]
    rows = {int(r.row["id"]): r.row for r in listed}
    # External rules' instances are driven by what Prometheus/Grafana send (external_alerts).
    parsed = _parse(listed, report, enabled=enabled)
    rules = [r for r in parsed if r.condition.type != "external"]
    report.rules = len(rules)
    cycle = Cycle(conn, now, tz, public_url, rows, list_silences(conn, now=now), report)
    cycle.running_since = running_since(conn, now)
    states: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (rule_id, key), row in load_states(conn, rows).items():
        states[rule_id][key] = row
    fetched = _fetch_all(cycle, rules)
    split: dict[str, series_mod.Keyed] = {}  # rules that cut a read the same way
    recent: dict[tuple[str, timedelta], series_mod.Keyed] = {}  # ... and look as far back
    for rule in sorted(rules, key=lambda r: r.condition.type == "composite"):
        fk, how, lookback = _cut(rule)
        keyed: series_mod.Keyed = {}
        if fk is not None:
            if how not in split:
                split[how] = series_mod.for_rule(rule, fk, fetched.get(fk, {}))
            reach = (how, lookback)
            if reach not in recent:
                recent[reach] = _within_lookback(split[how], now - lookback)
            keyed = recent[reach]
        _evaluate_rule(cycle, rule, keyed, states[rule.id])
    for grouped in fetched.values():  # a block's memo names the cuts of it (a reference
        for points in grouped.values():  # cycle): emptied, the cycle's reads free at once
            if type(points) is Points:
                points.block.memo.clear()
            break
    _store(cycle)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


# Per parsed rule (held with it, so its id stays its own): its read, how it cuts the read,
# and its lookback.
_CUTS: dict[int, tuple[Rule, series_mod.FetchKey | None, str, timedelta]] = {}


def _cut(rule: Rule) -> tuple[series_mod.FetchKey | None, str, timedelta]:
    """The rule's read (`series.fetch_key`), a name for how it cuts that read into alert
    keys (read, group_by, filters): rules with equal names share their keyed series; and
    `series.lookback`."""
    held = _CUTS.get(id(rule))
    if held is not None and held[0] is rule:
        return held[1], held[2], held[3]
    fk, cond = series_mod.fetch_key(rule), rule.condition
    how = repr((fk, cond.group_by, json.dumps(dict(cond.filters), sort_keys=True, default=str)))
    if len(_CUTS) > 2 * len(_PARSED) + 1000:  # rules since replaced by newer versions
        _CUTS.clear()
    _CUTS[id(rule)] = (rule, fk, how, series_mod.lookback(rule))
    return fk, how, _CUTS[id(rule)][3]


def _within_lookback(keyed: series_mod.Keyed, cutoff: datetime) -> series_mod.Keyed:
    """The keys with a point after `cutoff` (now − the rule's own lookback): a read shared
    with a rule that looks further back also holds keys whose newest point is older, and such
    a key is absent for this rule (as when it is evaluated alone, and in a backtest), not
    without data."""
    cutoff_us = (cutoff - _EPOCH) // _US

    def recent(points: Sequence[Point]) -> bool:
        if type(points) is Points:  # a view: its newest time from the arrays
            return points.newest_us() > cutoff_us
        return not points or points[-1].time > cutoff

    if all(recent(pts) for _dims, pts in keyed.values()):
        return keyed
    return {k: v for k, v in keyed.items() if recent(v[1])}


def _evaluate_rule(
    cycle: Cycle, rule: Rule, keyed: series_mod.Keyed, existing: dict[str, dict[str, Any]]
) -> None:
    if rule.condition.type == "promql":
        _evaluate_promql(cycle, rule, existing)
        return
    children = cycle.holds if rule.condition.type == "composite" else None
    seen_at = cycle.rows[rule.id].get("data_seen_at")
    seen = seen_at is not None and (cycle.running_since is None or seen_at >= cycle.running_since)
    known = {
        key: Known(state_of(row), row["severity"], row.get("trigger_dimensions") or {})
        for key, row in existing.items()
    }
    decided = evaluate_keys(
        rule, keyed, known, cycle.now, tz=cycle.tz, children=children, seen_data=seen
    )
    results = []
    for key, dims, decision, present in decided.moved:  # quiet keys: nothing to store
        row = existing.get(key)
        _apply(cycle, rule, key, dims, decision, row, known[key].state if row else _NONE)
        if present:
            results.append(decision.check.holds)
    if decided.quiet:  # each held False
        results.append(False)
    if not seen and any(holds is not None for holds in results):
        cycle.saw_data.append(rule.id)
    cycle.holds[rule.id] = True if True in results else (False if False in results else None)
    cycle.report.keys += len(results) - bool(decided.quiet) + len(decided.quiet)


def _evaluate_promql(cycle: Cycle, rule: Rule, existing: dict[str, dict[str, Any]]) -> None:
    """A PromQL rule: one alert per series its expression returns (alerts/promql_rules)."""
    try:
        with cycle.conn.begin_nested():  # a failing expression must not abort the cycle
            decided = list(promql_decisions(cycle.conn, rule, existing, cycle.now, tz=cycle.tz))
    except (QueryError, DBAPIError) as exc:
        cycle.report.errors.append(f"rule {rule.id}: {type(exc).__name__}: {exc}")
        return
    for key, labels, decision, row in decided:
        _apply(cycle, rule, key, labels, decision, dict(row) if row else None, state_of(row))
    cycle.report.keys += len(decided)


def _apply(
    cycle: Cycle,
    rule: Rule,
    key: str,
    dims: Mapping[str, Any],
    decision: Decision,
    row: dict[str, Any] | None,
    before: AlertState,
) -> None:
    """Queue the decision for `_store` unless nothing moved (most keys, most cycles)."""
    if not decision.notify and (
        decision.state.status is None  # a quiet key without an instance stays without one
        or (row is not None and row["severity"] == decision.severity and decision.state == before)
    ):
        return
    counted = (
        row is not None
        and not decision.changed
        and row["severity"] == decision.severity
        and only_counted(before, decision.state)
    )
    write = DecisionWrite(rule.id, key, dims, decision, row["id"] if row else None, counted)
    cycle.pending.append((rule, write, row))


def _entered_no_data(rule: Rule, write: DecisionWrite) -> bool:
    return (
        write.decision.state.status == "no_data"
        and write.decision.from_status != "no_data"
        and rule.condition.type not in ("pattern", "composite")
        and rule.condition.metric is not None
    )


def _date_no_data(cycle: Cycle) -> None:
    """Instances that just entered no data: the engine knows only that the data stopped at
    least a window ago; the newest stored point tells when (one read per cycle, if any)."""
    entering = [i for i, (rule, w, _row) in enumerate(cycle.pending) if _entered_no_data(rule, w)]
    if not entering:
        return
    metrics = [str(cycle.pending[i][0].condition.metric) for i in entering]
    seen = newest_points(cycle.conn, names=metrics, now=cycle.now)
    for i in entering:
        rule, write, row = cycle.pending[i]
        cond, state = rule.condition, write.decision.state
        last = last_point(seen, str(cond.metric), cond.filters, write.dimensions)
        if last is not None and state.no_data_since is not None and last < state.no_data_since:
            decision = replace(write.decision, state=replace(state, no_data_since=last))
            cycle.pending[i] = (rule, replace(write, decision=decision), row)


def _store(cycle: Cycle) -> None:
    """Write every queued decision at once, then open incidents and queue notifications."""
    _date_no_data(cycle)
    writes = [write for _rule, write, _row in cycle.pending]
    ids = save_decisions(cycle.conn, writes, now=cycle.now)
    cycle.report.stored = sum(i is not None for i in ids)
    for (rule, write, row), instance_id in zip(cycle.pending, ids, strict=True):
        if instance_id is not None:
            _follow_up(cycle, rule, write, row, instance_id)
    cycle.pending.clear()
    mark_data_seen(cycle.conn, rule_ids=cycle.saw_data, now=cycle.now, since=cycle.running_since)
    flush_notifications(cycle)


def _follow_up(
    cycle: Cycle, rule: Rule, write: DecisionWrite, row: dict[str, Any] | None, instance_id: int
) -> None:
    decision, key = write.decision, write.alert_key
    cycle.report.changes += decision.changed
    incident_id = row.get("incident_id") if row else None
    if decision.changed and decision.state.status == "firing" and decision.severity == "critical":
        incident_id = _open_incident(cycle, rule, key, instance_id, decision, incident_id)
    elif decision.changed and decision.state.status in ("resolved", "expired") and incident_id:
        add_timeline_entry(
            cycle.conn,
            incident_id=incident_id,
            kind="alert_resolved",
            message=f"Alert {rule.name}{' ' + key if key else ''} {decision.state.status}",
            actor=ACTOR,
            now=cycle.now,
            details={"alert_instance_id": instance_id},
        )
    if decision.notify:
        alert = _alert_view(rule, key, instance_id, decision, incident_id)
        notify_alert(cycle, rule, alert, dict(write.dimensions), decision.notify, flush=False)


def _alert_view(
    rule: Rule, key: str, instance_id: int, decision: Decision, incident_id: int | None
) -> dict[str, Any]:
    state: AlertState = decision.state
    return {
        "id": instance_id,
        "alert_name": rule.name,
        "alert_key": key,
        "severity": decision.severity,
        "trigger_value": decision.check.value
        if decision.check.value is not None
        else state.trigger_value,
        "threshold": decision.check.threshold,
        "trigger_count": state.trigger_count,
        "first_triggered_at": state.first_triggered_at,
        "incident_id": incident_id,
    }


def _open_incident(
    cycle: Cycle,
    rule: Rule,
    key: str,
    instance_id: int,
    decision: Decision,
    incident_id: int | None,
) -> int | None:
    if incident_id is not None:
        status = cycle.conn.execute(
            select(incidents.c.status).where(incidents.c.id == incident_id)
        ).scalar()
        if status not in ("resolved", "closed", None):
            return incident_id  # still open: the alert fired again within it
    severity = severity_for_alert(
        now=cycle.now, tz=cycle.tz, wedding_critical=rule.service_name in WEDDING_CRITICAL_SERVICES
    )
    incident = open_incident(
        cycle.conn,
        title=f"{rule.name}{' (' + key + ')' if key else ''}",
        severity=severity,
        affected_services=[rule.service_name] if rule.service_name else [],
        source="alert",
        created_by=ACTOR,
        now=cycle.now,
        description=decision.check.message,
        alert_instance_id=instance_id,
        tz=cycle.tz,
    )
    cycle.report.incidents += 1
    return int(incident["id"])


def notify_alert(
    cycle: Cycle,
    rule: Rule,
    alert: dict[str, Any],
    dims: dict[str, str],
    kind: str,
    *,
    channels: list[int] | None = None,
    step: int | None = None,
    flush: bool = True,
) -> bool:
    """Queue the notification for the outbox unless silenced (True), and write it now unless
    `flush` is False (the cycle writes all of its notifications at once)."""
    labels = alert_labels(
        rule_id=rule.id,
        alert_name=rule.name,
        severity=alert["severity"],
        service=rule.service_name,
        dimensions=dims,
    )
    if is_silenced(cycle.silences, labels, cycle.now, cycle.tz):
        cycle.report.silenced += 1
        return False
    if channels is None:
        channels = list(cycle.rows[rule.id]["notification_channels"] or [])
        if not channels:  # a rule naming no channels still reaches someone: the default route
            severity = alert["severity"]
            if severity not in cycle.routes:  # one lookup per severity and cycle
                cycle.routes[severity] = route_channels(
                    cycle.conn, severity, now=cycle.now, tz=cycle.tz
                )
            channels = cycle.routes[severity]
    if channels:  # without one nothing is sent (nor rendered); the alert still counts notified
        message = render_alert(kind, alert, public_url=cycle.public_url, step=step)
        suffix = f":{step}" if step is not None else ""
        cycle.outbox += outbox_rows(
            channel_ids=channels,
            message=message,
            kind=kind,
            idempotency_key=f"alert:{alert['id']}:{kind}{suffix}:{cycle.now.isoformat()}",
            now=cycle.now,
            alert_instance_id=int(alert["id"]),
            incident_id=alert.get("incident_id"),
        )
    if kind in ("firing", "repeat", "no_data"):
        cycle.notified.append(int(alert["id"]))
    if flush:
        flush_notifications(cycle)
    return True


def flush_notifications(cycle: Cycle) -> None:
    """Write the queued outbox rows and stamp `last_notified_at`, one statement each."""
    wanted = {row["channel_id"] for row in cycle.outbox}
    known = (
        set(
            cycle.conn.execute(
                select(notification_channels.c.id).where(notification_channels.c.id.in_(wanted))
            ).scalars()
        )
        if wanted
        else set()
    )
    if missing := wanted - known:  # e.g. an escalation policy naming a channel since deleted
        log.warning("notifications for unknown channels %s dropped", sorted(missing))
        cycle.report.errors.append(f"unknown channels {sorted(missing)}")
    rows = [row for row in cycle.outbox if row["channel_id"] in known]
    cycle.report.notifications += len(enqueue(cycle.conn, rows))
    if cycle.notified:
        ids = bindparam("ids", cycle.notified, type_=ARRAY(BigInteger))
        cycle.conn.execute(
            update(alert_instances)
            .where(alert_instances.c.id == any_(ids))
            .values(last_notified_at=cycle.now)
        )
    cycle.outbox, cycle.notified = [], []
