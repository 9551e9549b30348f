"""MTTA/MTTR against hand-computed values, metric points, and the post-incident report's facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select, text

from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.incidents import postmortem, response_figures, service
from monitoring_core.incidents.store import link_error_group, list_timeline
from monitoring_core.rollups import run_rollups
from monitoring_core.schema import error_groups, incidents
from tests.alerting_support import partitions_around, point, threshold_rule

LONDON = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 6, 16, 9, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 6, 13, 14, 0, tzinfo=UTC)


def _row(sev: str, detected: datetime, ack: float | None, res: float | None, **kw: Any) -> dict:
    return {
        "severity": sev, "detected_at": detected, "affected_services": kw.get("services", []),
        "acknowledged_at": detected + timedelta(minutes=ack) if ack is not None else None,
        "resolved_at": detected + timedelta(minutes=res) if res is not None else None,
        "wedding_impact": kw.get("impact", "none"), "is_saturday": kw.get("saturday", False),
    }  # fmt: skip


ROWS = [
    _row("SEV1", TUESDAY, 4, 40, services=["payments"]),
    _row("SEV1", TUESDAY + timedelta(days=1), 10, 80, services=["payments", "web"]),
    _row("SEV1", SATURDAY, 1, 30, saturday=True, impact="wedding_day_critical"),
    _row("SEV2", TUESDAY, 20, None, services=["gallery"]),  # acknowledged, not resolved yet
    _row("SEV2", datetime(2026, 7, 1, 8, tzinfo=UTC), None, None),  # July, untouched
]


def test_it_computes_mtta_and_mttr_by_severity_and_month() -> None:
    out = response_figures.summarise(ROWS, LONDON)
    # SEV1 in June: MTTA (4 + 10 + 1) / 3 = 5, MTTR (40 + 80 + 30) / 3 = 50
    assert out["by_month_severity"] == [
        {"month": "2026-06", "severity": "SEV1", "incidents": 3, "mtta_minutes": 5.0, "mttr_minutes": 50.0},
        {"month": "2026-06", "severity": "SEV2", "incidents": 1, "mtta_minutes": 20.0, "mttr_minutes": None},
        {"month": "2026-07", "severity": "SEV2", "incidents": 1, "mtta_minutes": None, "mttr_minutes": None},
    ]  # fmt: skip
    # all: MTTA (4 + 10 + 1 + 20) / 4 = 8.75; MTTR (40 + 80 + 30) / 3 = 50
    assert out["totals"] == {"incidents": 5, "mtta_minutes": 8.75, "mttr_minutes": 50.0}
    assert out["by_service"] == [
        {"service": "payments", "incidents": 2}, {"service": "web", "incidents": 1},
        {"service": "gallery", "incidents": 1},
    ]  # fmt: skip
    assert out["saturday"] == {
        "incidents": 1,
        "mtta_minutes": 1.0,
        "mttr_minutes": 30.0,
        "share": 0.2,
    }
    assert {"wedding_impact": "wedding_day_critical", "incidents": 1} in out["by_wedding_impact"]


def test_it_counts_months_in_the_business_time_zone() -> None:
    late = _row("SEV3", datetime(2026, 6, 30, 23, 30, tzinfo=UTC), 5, 10)  # 1 July in London
    assert response_figures.summarise([late], LONDON)["by_month_severity"][0]["month"] == "2026-07"


def test_it_makes_metric_points_for_the_alert_engine() -> None:
    points = response_figures.incident_metric_points(ROWS, [{"severity": "SEV1"}], TUESDAY)
    by = {(p.name, p.dimensions.get("severity")): p.value for p in points}
    assert by[("incidents.open_count", None)] == 1.0
    assert by[("incidents.open_count", "SEV1")] == 1.0
    assert by[("incidents.mtta_minutes", "SEV1")] == 5.0
    assert by[("incidents.mttr_minutes", "SEV1")] == 50.0
    assert ("incidents.mttr_minutes", "SEV2") not in by  # nothing resolved: no point, not 0


def _declare(engine: Engine, at: datetime, severity: str, ack: float, res: float) -> int:
    kw: dict[str, Any] = {"actor": "bob", "role": "responder"}
    with engine.begin() as c:
        inc = service.create_incident(
            c, body={"title": "x", "severity": severity}, now=at, tz=LONDON, **kw
        )
        service.acknowledge_incident(
            c, incident_id=inc["id"], now=at + timedelta(minutes=ack), **kw
        )
        service.resolve_incident(
            c,
            incident_id=inc["id"],
            resolution_summary="fixed",
            now=at + timedelta(minutes=res),
            **kw,
        )
    return int(inc["id"])  # fmt: skip


def test_it_reports_and_records_figures_from_the_database(engine: Engine) -> None:
    _declare(engine, TUESDAY, "SEV1", 3, 33)
    _declare(engine, TUESDAY + timedelta(hours=1), "SEV1", 7, 47)
    now = TUESDAY + timedelta(hours=3)
    partitions_around(engine, now)
    with engine.begin() as c:
        rep = response_figures.incident_report(
            c, start=TUESDAY - timedelta(days=1), end=now, tz=LONDON
        )
        card = response_figures.overview_card(c, now=now)
        written = response_figures.record_incident_metrics(c, now=now)
        stored = c.execute(text(
            "SELECT s.name, s.dimensions->>'severity', p.value FROM metric_points p "
            "JOIN metric_series s ON s.id = p.series_id WHERE s.name LIKE 'incidents.%'"
        )).all()  # fmt: skip
    assert rep["totals"] == {"incidents": 2, "mtta_minutes": 5.0, "mttr_minutes": 40.0}
    assert card == {"open": 0, "open_sev1": 0, "incidents_30d": 2, "mtta_minutes_30d": 5.0,
                    "mttr_minutes_30d": 40.0}  # fmt: skip
    assert written == len(stored)
    assert ("incidents.mtta_minutes", "SEV1", 5.0) in [tuple(r) for r in stored]


@pytest.fixture
def alert_incident(engine: Engine) -> int:
    """A critical alert that fired and opened an incident, with an error group linked."""
    partitions_around(engine, TUESDAY)
    with engine.begin() as conn:
        threshold_rule(conn, TUESDAY, alert_name="Checkout slow", severity_level="critical",
                       service_name="checkout", metric_name="checkout_latency_ms")  # fmt: skip
    point(engine, TUESDAY - timedelta(minutes=30), 80)
    point(engine, TUESDAY - timedelta(seconds=5), 900)
    run_evaluation(engine, TUESDAY, tz=LONDON, public_url="http://ui")
    point(engine, TUESDAY + timedelta(minutes=5), 700)
    point(engine, TUESDAY + timedelta(minutes=40), 90)
    with engine.begin() as conn:
        incident_id = int(conn.execute(select(incidents.c.id)).scalar_one())
        group = conn.execute(insert(error_groups).values(
            fingerprint="f1", error_type="TimeoutError", message_template="upstream timed out",
            level="api", severity="high", first_seen=TUESDAY, last_seen=TUESDAY, event_count=42,
            user_count=7).returning(error_groups.c.id)).scalar_one()  # fmt: skip
        link_error_group(
            conn, incident_id=incident_id, error_group_id=group, now=TUESDAY, actor="bob"
        )
    run_rollups(engine, TUESDAY + timedelta(hours=2), safety_lag=timedelta(0))
    return incident_id


def test_it_drafts_the_report_from_the_recorded_facts(engine: Engine, alert_incident: int) -> None:
    kw: dict[str, Any] = {"incident_id": alert_incident, "actor": "carol", "role": "responder"}
    with engine.begin() as c:
        service.acknowledge_incident(c, now=TUESDAY + timedelta(minutes=4), **kw)
        service.add_note(
            c, message="Payment provider latency", now=TUESDAY + timedelta(minutes=6), **kw
        )
        service.resolve_incident(
            c,
            resolution_summary="Failed over to the backup provider",
            now=TUESDAY + timedelta(minutes=30),
            **kw,
        )
        postmortem.add_action_item(
            c,
            title="Alert on provider latency",
            owner="dave",
            now=TUESDAY + timedelta(minutes=31),
            **kw,
        )
        md = postmortem.generate_postmortem(c, now=TUESDAY + timedelta(hours=2), **kw)
        stored = c.execute(select(incidents.c.postmortem_markdown)).scalar_one()
        kinds = [e["kind"] for e in list_timeline(c, incident_id=alert_incident)]
    # fmt: skip
    assert stored == md
    assert "# Post-incident report: INC-2026-0001 — Checkout slow" in md
    assert "time to acknowledge 4.0 min" in md and "time to resolve 30.0 min" in md
    assert "Failed over to the backup provider" in md
    assert "Affected services: checkout" in md
    assert "Checkout slow (critical, firing)" in md and "value 900" in md
    assert "TimeoutError: upstream timed out — 42 events, 7 users" in md
    assert "| 2026-06-16 09:36:00 UTC | note | carol | Payment provider latency |" in md
    assert "- [ ] Alert on provider latency (owner: dave)" in md
    # snapshots: before (08:30-09:30: 80 and 900), during (09:30-10:00: 700), after (10:00-11:00: 90)
    assert (
        "| checkout_latency_ms | before | 2026-06-16 08:30:00 UTC | 2026-06-16 09:30:00 UTC | 490 | 900 |"
        in md
    )
    assert "| checkout_latency_ms | during |" in md and "| 700 | 700 |" in md
    assert "| checkout_latency_ms | after |" in md and "| 90 | 90 |" in md
    assert "## Contributing factors" in md
    assert kinds[0] == "opened" and "postmortem" in kinds and "action_item" in kinds


def test_it_lets_only_responders_save_reports(engine: Engine) -> None:
    incident_id = _declare(engine, TUESDAY, "SEV2", 1, 2)
    with engine.begin() as c, pytest.raises(service.PermissionDenied):
        postmortem.save_postmortem(c, incident_id=incident_id, markdown="# x", actor="v", role="viewer",
                               now=TUESDAY)  # fmt: skip
