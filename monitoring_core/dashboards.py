"""Dashboards: named sets of metric panels, kept per team, opened by URL, in the configuration file.

A panel charts one stored metric the way the Metrics page (Explore) does — aggregation,
group-by dimensions, dimension filters — over the page's time range, drawn as a line or bar
chart, a single stat (the aggregation over the whole range) or a table of the latest values.
Every metric in the store is available: system and database metrics, SQL collectors, Prometheus
pushes and remote write, OTLP metrics, and the built-in figures the system writes as metrics
itself (incident MTTA/MTTR, KPI metrics).

Responders and admins save dashboards (audited); everyone reads them. `config export/apply`
carries them in the `dashboards` section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.metrics_query import AGGREGATIONS
from monitoring_core.roles import require_role
from monitoring_core.schema import dashboards

__all__ = [
    "CHARTS",
    "MAX_PANELS",
    "DashboardInvalid",
    "delete_dashboard",
    "get_dashboard",
    "list_dashboards",
    "save_dashboard",
    "validate_panels",
]

CHARTS = ("line", "bar", "stat", "table")
MAX_PANELS = 24
MAX_TEXT = 200


class DashboardInvalid(ValueError):
    """A dashboard that cannot be saved; the message names the field."""


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT:
        raise DashboardInvalid(f"{field}: must be text of at most {MAX_TEXT} characters")
    value = value.strip()
    if required and not value:
        raise DashboardInvalid(f"{field}: must not be empty")
    return value


def _panel(raw: Any, index: int) -> dict[str, Any]:
    where = f"panels[{index}]"
    if not isinstance(raw, Mapping):
        raise DashboardInvalid(f"{where}: must be an object")
    unknown = set(raw) - {"title", "metric", "aggregation", "group_by", "filters", "chart"}
    if unknown:
        raise DashboardInvalid(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    metric = _text(raw.get("metric"), f"{where}.metric")
    aggregation = raw.get("aggregation", "avg")
    if aggregation not in AGGREGATIONS:
        raise DashboardInvalid(f"{where}.aggregation: one of {', '.join(AGGREGATIONS)}")
    chart = raw.get("chart", "line")
    if chart not in CHARTS:
        raise DashboardInvalid(f"{where}.chart: one of {', '.join(CHARTS)}")
    group_by = raw.get("group_by") or []
    if not isinstance(group_by, list) or len(group_by) > 5:
        raise DashboardInvalid(f"{where}.group_by: a list of at most 5 dimensions")
    filters = raw.get("filters") or {}
    if not isinstance(filters, Mapping) or len(filters) > 10:
        raise DashboardInvalid(f"{where}.filters: an object of at most 10 dimension: value")
    return {
        "title": _text(raw.get("title"), f"{where}.title", required=False) or metric,
        "metric": metric,
        "aggregation": aggregation,
        "group_by": [_text(g, f"{where}.group_by") for g in group_by],
        "filters": {
            _text(k, f"{where}.filters"): _text(v, f"{where}.filters.{k}")
            for k, v in filters.items()
        },
        "chart": chart,
    }


def validate_panels(panels: Any) -> list[dict[str, Any]]:
    """The panels checked and normalised; DashboardInvalid naming the first bad field."""
    if not isinstance(panels, list):
        raise DashboardInvalid("panels: must be a list")
    if len(panels) > MAX_PANELS:
        raise DashboardInvalid(f"panels: at most {MAX_PANELS}")
    return [_panel(p, i) for i, p in enumerate(panels)]


def list_dashboards(conn: Connection, team: str | None = None) -> list[dict[str, Any]]:
    """Every dashboard (or one team's) by team and name, with its panel count."""
    t = dashboards.c
    query = select(t.id, t.name, t.team, t.panels, t.updated_by, t.updated_at).order_by(
        t.team, t.name
    )
    if team is not None:
        query = query.where(t.team == team)
    return [dict(r) | {"panel_count": len(r["panels"])} for r in conn.execute(query).mappings()]


def get_dashboard(conn: Connection, dashboard_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(dashboards).where(dashboards.c.id == dashboard_id)).mappings().first()
    return None if row is None else dict(row)


def save_dashboard(
    conn: Connection,
    *,
    dashboard_id: int | None,
    name: Any,
    team: Any,
    panels: Any,
    actor: str,
    role: str,
    now: datetime,
) -> int:
    """Create (dashboard_id None) or replace a dashboard; its id. Responders and admins;
    audited `dashboard.save`."""
    require_role(role, Role.RESPONDER)
    panel_list = validate_panels(panels)
    values: dict[str, Any] = {
        "name": _text(name, "name"),
        "team": _text(team, "team", required=False),
        "panels": panel_list,
        "updated_by": actor,
        "updated_at": now,
    }
    try:
        with conn.begin_nested():
            if dashboard_id is None:
                saved = conn.execute(insert(dashboards).values(**values).returning(dashboards.c.id))
                dashboard_id = int(saved.scalar_one())
            else:
                found = conn.execute(
                    update(dashboards)
                    .where(dashboards.c.id == dashboard_id)
                    .values(**values)
                    .returning(dashboards.c.id)
                ).first()
                if found is None:
                    raise DashboardInvalid(f"no dashboard {dashboard_id}")
    except IntegrityError:
        raise DashboardInvalid(f"name: a dashboard named {values['name']!r} exists") from None
    record_audit(
        conn,
        actor=actor,
        action="dashboard.save",
        target=f"dashboard:{dashboard_id}",
        details={"name": values["name"], "panels": len(panel_list)},
        now=now,
    )
    return dashboard_id


def delete_dashboard(
    conn: Connection, *, dashboard_id: int, actor: str, role: str, now: datetime
) -> bool:
    """Delete a dashboard (responders and admins; audited); False when it was gone."""
    require_role(role, Role.RESPONDER)
    gone = conn.execute(delete(dashboards).where(dashboards.c.id == dashboard_id)).rowcount
    if gone:
        record_audit(
            conn,
            actor=actor,
            action="dashboard.delete",
            target=f"dashboard:{dashboard_id}",
            now=now,
        )
    return bool(gone)


def panel_labels(panels: Sequence[Mapping[str, Any]]) -> list[str]:
    """A short description of each panel (for lists and confirmations)."""
    return [f"{p['title']} ({p['aggregation']} of {p['metric']}, {p['chart']})" for p in panels]
