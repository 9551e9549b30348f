"""The Alerts page's Rules tab: the rule list (edit, duplicate, delete, enable/disable) and the
rule editor, which offers the signal catalogue (`alerts.signals`) instead of free-typed names.

The signal is picked outside the form (its aggregations and dimensions then fill the form's
choices); type-specific extras (z_threshold, min_count, composite children …) go in an
optional JSON field that may not name the signal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core.alerts import service
from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import (
    NO_DATA_MODES,
    OPERATORS,
    TEMPLATES,
    RuleInvalid,
    rule_from_row,
)
from monitoring_core.alerts.signals import METRIC_AGGREGATIONS, catalogue
from monitoring_core.enums import Severity
from monitoring_core.notify.channels import list_channels
from monitoring_core.timerange import TimeRange
from ui import data, fmt, url_state, widgets
from ui.actions import confirmed

__all__ = ["rules_tab"]

Act = Callable[..., None]
TYPES = ("threshold", "anomaly", "absence", "rate_of_change", "composite")
_FORM_KEYS = {
    "type",
    "metric",
    "aggregation",
    "operator",
    "value",
    "window_minutes",
    "duration_minutes",
    "group_by",
    "filters",
    "filter",
    "no_data_state",
    "no_data",
}
BLANK = {
    "alert_name": "",
    "severity_level": "medium",
    "condition_config": {
        "type": "threshold",
        "metric": "api.latency_ms",
        "aggregation": "p95",
        "operator": "greater_than",
        "value": 1000,
        "window_minutes": 5,
    },
}


_OPERATOR_WORDS = {
    "greater_than": "above (>)",
    "less_than": "below (<)",
    "greater_than_or_equal": "at or above (≥)",
    "less_than_or_equal": "at or below (≤)",
    "equals": "equal to (=)",
    "not_equals": "not equal to (≠)",
}
_NO_DATA_WORDS = {
    "no_data": "Its own 'no data' state",
    "ok": "Resolve (treat as OK)",
    "alerting": "Fire (treat as a breach)",
    "keep_last": "Keep the last state",
}


def _filters_text(filters: Mapping[str, Any]) -> str:
    return "\n".join(f"{k}={v}" for k, v in filters.items())


def _parse_filters(raw: str) -> dict[str, str]:
    out = {}
    for line in raw.splitlines():
        if line.strip():
            name, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"filter {line.strip()!r} is not dimension=value")
            out[name.strip()] = value.strip()
    return out


def _index(options: list[str], value: Any) -> int:
    return options.index(value) if value in options else 0


def _signal_picker(prefix: str, cfg: Mapping[str, Any], signals: list[dict]) -> dict[str, Any]:
    names = [s["name"] for s in signals]
    by_name = {s["name"]: s for s in signals}
    current = cfg.get("metric")
    if isinstance(current, str) and current and current not in by_name:
        # a metric with no points stored yet (or the worker's own rule): kept as it is, not
        # silently swapped for the first signal of the list
        names.insert(0, current)
        by_name[current] = {
            "name": current,
            "family": "metric",
            "unit": "",
            "dimensions": [],
            "aggregations": list(METRIC_AGGREGATIONS),
            "description": "Not a stored metric yet: no point of it has been received.",
        }
    picked = st.selectbox(
        "Signal",
        names,
        index=_index(names, cfg.get("metric")),
        key=f"{prefix}_signal",
        format_func=lambda n: f"{n} ({by_name[n]['unit']})" if by_name[n]["unit"] else n,
        help="Built-in signals first (API timings, Web Vitals, errors, health, business), "
        "then every stored metric.",
    )
    st.caption(fmt.md_escape(by_name[picked]["description"]))
    return by_name[picked]


def _condition(prefix: str, cfg: Mapping[str, Any], sig: Mapping[str, Any]) -> dict[str, Any]:
    """The form's widgets for a condition (inside a form); the condition they say."""
    kinds, aggs, ops = list(TYPES), list(sig["aggregations"]), list(OPERATORS)
    c1, c2, c3, c4 = st.columns(4)
    out: dict[str, Any] = {
        "type": c1.selectbox(
            "Type",
            kinds,
            _index(kinds, cfg.get("type")),
            key=f"{prefix}_type",
            format_func=fmt.label,
        ),
        "metric": sig["name"],
        "aggregation": c2.selectbox(
            "Aggregation", aggs, _index(aggs, cfg.get("aggregation")), key=f"{prefix}_agg"
        ),
        "operator": c3.selectbox(
            "Operator",
            ops,
            _index(ops, cfg.get("operator")),
            key=f"{prefix}_op",
            format_func=lambda o: _OPERATOR_WORDS.get(o, fmt.label(o)),
        ),
        "value": c4.number_input(
            "Value", value=float(cfg.get("value", 0)), format="%g", key=f"{prefix}_value"
        ),
    }
    d1, d2 = st.columns(2)
    out["window_minutes"] = d1.number_input(
        "Window (minutes)",
        0.5,
        60.0 * 24 * 7,
        float(cfg.get("window_minutes", 5)),
        format="%g",
        key=f"{prefix}_window",
    )
    out["duration_minutes"] = d2.number_input(
        "Holds for (minutes) before firing",
        0.0,
        1440.0,
        float(cfg.get("duration_minutes", 0)),
        format="%g",
        key=f"{prefix}_duration",
    )
    dims = list(sig["dimensions"])
    out["group_by"] = st.multiselect(
        "One alert per",
        dims,
        [d for d in cfg.get("group_by") or [] if d in dims],
        key=f"{prefix}_group",
    )
    out["filters"] = st.text_area(
        "Only where (one dimension=value a line)",
        _filters_text(cfg.get("filters") or cfg.get("filter") or {}),
        key=f"{prefix}_filters",
        help=f"Dimensions: {', '.join(dims) or 'the labels of its series'}",
    )
    return out


def _form(
    prefix: str, base: Mapping[str, Any], admin_act: Act, rule_id: int | None, tr: TimeRange
) -> None:
    cfg = dict(base.get("condition_config") or {})
    signals = data.read_or_stop(catalogue)
    channels = data.read_or_stop(list_channels)
    sig = _signal_picker(prefix, cfg, signals)
    with st.form(f"{prefix}_form"):
        name = st.text_input("Name", base.get("alert_name", ""), key=f"{prefix}_name")
        severities = [s.value for s in Severity]
        severity = st.selectbox(
            "Severity",
            severities,
            _index(severities, base.get("severity_level")),
            key=f"{prefix}_severity",
            format_func=str.capitalize,
        )
        condition = _condition(prefix, cfg, sig)
        no_data_state = st.selectbox(
            "When there is no data",
            NO_DATA_MODES,
            _index(list(NO_DATA_MODES), cfg.get("no_data_state", cfg.get("no_data"))),
            key=f"{prefix}_no_data",
            format_func=lambda m: _NO_DATA_WORDS.get(m, fmt.label(m)),
            help="Its own state: listed apart and notified once the rule has seen data.",
        )
        extras = {k: v for k, v in cfg.items() if k not in _FORM_KEYS}
        extra_text = st.text_area(
            "More settings (JSON, optional)",
            json.dumps(extras) if extras else "",
            key=f"{prefix}_extra",
            help='e.g. {"min_count": 10}, {"z_threshold": 4} for '
            'anomaly, {"rules": [1, 2], "logic": "and"} for composite',
        )
        ids = [c["id"] for c in channels]
        picked = st.multiselect(
            "Channels",
            ids,
            [i for i in base.get("notification_channels") or [] if i in ids],
            format_func=lambda i: next(c["name"] for c in channels if c["id"] == i),
            key=f"{prefix}_channels",
            help="None: the default route by severity",
        )
        weekend = st.checkbox(
            "Saturday: one severity higher",
            bool(base.get("weekend_escalation")),
            key=f"{prefix}_sat",
        )
        season = st.checkbox(
            "May–October: 20 % stricter",
            bool(base.get("wedding_season_adjustment")),
            key=f"{prefix}_season",
        )
        test, save = st.columns(2)
        step = test.selectbox(
            "Test step",
            list(_TEST_STEPS),
            format_func=_TEST_STEPS.__getitem__,
            key=f"{prefix}_step",
            help="How often the replay evaluates the rule; the live cycle runs every 15 s",
        )
        tested = test.form_submit_button("Test against history")
        saved = save.form_submit_button("Save" if rule_id else "Create")
    if not (tested or saved):
        return
    try:
        extra = json.loads(extra_text) if extra_text.strip() else {}
        if not isinstance(extra, dict) or "metric" in extra:
            raise ValueError("more settings must be a JSON object that does not name the signal")
        condition["filters"] = _parse_filters(condition["filters"])
    except (ValueError, json.JSONDecodeError) as exc:
        st.error(fmt.md_escape(exc))
        return
    body = {
        "alert_name": name,
        "severity_level": severity,
        "condition_config": {**condition, **extra, "no_data_state": no_data_state},
        "notification_channels": picked,
        "weekend_escalation": weekend,
        "wedding_season_adjustment": season,
        "service_name": base.get("service_name"),
    }
    if saved and rule_id:
        admin_act("Save rule", service.rule_update, rule_id=rule_id, body=body)
    elif saved:
        admin_act("Create rule", service.rule_create, body=body)
    else:
        _test(body, tr, step)


# Test steps in seconds (0: the rule's default, the live cadence where raw points are read)
_TEST_STEPS = {0: "Rule's default", 15: "15 s (live cadence)", 60: "1 min", 300: "5 min"}


def _test(body: dict[str, Any], tr: TimeRange, step_s: int = 0) -> None:
    try:
        with data.get_engine().connect() as conn:
            result = backtest(
                conn,
                rule_from_row({"id": 0, **body}),
                start=tr.start,
                end=tr.end,
                tz=data.business_tz(),
                step=timedelta(seconds=step_s) if step_s else None,
            )
    except (RuleInvalid, ValueError) as exc:
        st.error(f"Cannot test: {fmt.md_escape(exc)}")
        return
    tz = data.business_tz()
    st.metric("Would have fired", fmt.plural(result["fired_count"], "time"))
    st.caption(
        f"Replayed every {_seconds(result['step_seconds'])}: "
        f"the engine decided {fmt.plural(result['evaluated_steps'], 'time')}, "
        "the other steps changed nothing"
    )
    if result.get("coarse"):
        st.warning(
            f"Replayed every {_seconds(result['step_seconds'])}, more coarsely than the live "
            "cycle checks this rule (a metric rule changing state at most steps of a long "
            "range, or one over a window longer than 20 minutes often near its threshold): "
            "a breach shorter than that can be missing here. "
            "A shorter range replays at a finer step."
        )
    points = [
        (k["alert_key"] or "all", t.astimezone(tz).replace(tzinfo=None), v)
        for k in result["series"]
        for t, v in k["points"]
    ]
    chart = pd.DataFrame(points, columns=["key", "time", "value"])
    if not chart.empty:
        st.line_chart(chart, x="time", y="value", color="key")
    rows = [
        {
            "Time": fmt.when(e["time"], tz, tr.end),
            "Labels": e["alert_key"] or "—",
            "Change": f"{fmt.label(e['from_status'] or 'ok')} → {fmt.label(e['to_status'])}",
            "Value": fmt.number(e["value"]),
            "Threshold": fmt.number(e["threshold"]),
        }
        for e in result["fired"]
    ]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 60 else f"{value / 60:g} min"


def _rule_row(rule: Mapping[str, Any], admin: bool, act: Act) -> None:
    cfg = rule["condition_config"] or {}
    cols = st.columns([5, 1, 1, 1, 1])
    watched = f" · {fmt.md_escape(rule['metric_name'])}" if rule["metric_name"] else ""
    cols[0].markdown(
        f"{widgets.severity_badge(rule['severity_level'])} **{fmt.md_escape(rule['alert_name'])}** "
        f"· {fmt.md_escape(fmt.label(cfg.get('type')))}{watched}"
        f"{'' if rule['is_enabled'] else ' · *disabled*'}"
    )
    if not admin:
        return
    rid = rule["id"]
    if cols[1].button("Disable" if rule["is_enabled"] else "Enable", key=f"tog{rid}"):
        act(
            "Update rule",
            service.rule_update,
            rule_id=rid,
            body={"is_enabled": not rule["is_enabled"]},
        )
    # built-in rules (self-alerts, pattern and external rules) are not the editor's to change
    editable = cfg.get("type") in TYPES and (cfg.get("type") == "composite" or cfg.get("metric"))
    if editable and cols[2].button("Edit", key=f"edit{rid}"):
        url_state.put("rule", str(rid))  # ?rule=N: the editor opens on this rule (a link too)
    if editable and cols[3].button("Duplicate", key=f"dup{rid}"):
        act("Duplicate rule", service.rule_duplicate, rule_id=rid)
    question = f"Delete **{fmt.md_escape(rule['alert_name'])}** with its alerts and history?"
    if confirmed("Delete", question, key=f"del{rid}", where=cols[4]):
        if url_state.get_int("rule") == rid:
            url_state.put("rule", None)
        act("Delete rule", service.rule_delete, rule_id=rid)


def rules_tab(*, admin: bool, act: Act, tr: TimeRange, rules: list[dict[str, Any]]) -> None:
    """The rule list and, for admins, the editor (editing one rule, or a new one)."""
    for rule in rules:
        _rule_row(rule, admin, act)
    if not admin:
        return
    editing = next((r for r in rules if r["id"] == url_state.get_int("rule")), None)
    if editing is not None:
        st.subheader(f"Edit: {fmt.md_escape(editing['alert_name'])}")
        if st.button("Close the editor", key="rule_edit_cancel"):
            url_state.put("rule", None)
            st.rerun()
        _form(f"edit{editing['id']}", editing, act, editing["id"], tr)
        return
    st.subheader("New rule")
    template = st.selectbox(
        "Template",
        ["(blank)", *TEMPLATES],
        key="rule_template",
        format_func=lambda t: "Blank" if t == "(blank)" else fmt.label(t),
    )
    _form(f"new_{template}", TEMPLATES.get(template, BLANK), act, None, tr)
