"""Demo incidents: full timelines, one report, one still active, runbooks."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, select

from monitoring_core.demo import incidents as demo
from monitoring_core.incidents.queries import list_incidents
from monitoring_core.incidents.response_figures import incident_report
from monitoring_core.incidents.store import list_timeline
from monitoring_core.schema import incidents

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)  # a Wednesday


def test_it_loads_past_incidents_with_full_timelines(engine: Engine) -> None:
    with engine.begin() as conn:
        counts = demo.load(conn, days=8, now=NOW, rng=np.random.default_rng(1))
        rows = list_incidents(conn)
        timelines = {r["incident_number"]: list_timeline(conn, incident_id=r["id"]) for r in rows}
        report_md = conn.execute(select(incidents.c.postmortem_markdown).where(
            incidents.c.postmortem_markdown.is_not(None))).scalars().all()  # fmt: skip
        rep = incident_report(
            conn, start=datetime(2026, 6, 1, tzinfo=UTC), end=NOW, tz=ZoneInfo("Europe/London")
        )
    assert counts["incidents"] == 5 and counts["runbooks"] == 2
    assert counts["incident_action_items"] == 2
    assert sorted(r["status"] for r in rows) == [
        "closed",
        "closed",
        "investigating",
        "resolved",
        "resolved",
    ]
    saturday = next(r for r in rows if r["severity"] == "SEV1")
    assert saturday["is_saturday"] and saturday["detected_at"] == datetime(
        2026, 6, 13, 13, 12, tzinfo=UTC
    )
    assert all(len(t) >= 3 for t in timelines.values())
    assert all(max(e["time"] for e in t) < NOW for t in timelines.values())
    assert len(report_md) == 1 and "Payment provider timeouts during checkout" in report_md[0]
    assert rep["totals"]["incidents"] == 5 and rep["totals"]["mttr_minutes"] is not None
