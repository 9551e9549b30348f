"""Overall health: API timings, health checks, alerts and incidents combined, with reasons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, insert
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.flows.overall_health import overall_health, read_overall_health
from monitoring_core.incidents.store import open_incident
from monitoring_core.schema import health_checks
from monitoring_core.timerange import TimeRange

HEALTHY_API = {"status": "healthy", "requests": 900, "error_rate": 0.001, "p95_ms": 300.0}


def api(status: str, rate: float = 0.0, p95: float | None = 300.0) -> dict[str, Any]:
    requests = 0 if status == "unknown" else 900
    return {"status": status, "requests": requests, "error_rate": rate, "p95_ms": p95}


def check(name: str, status: str, wedding_critical: bool = False) -> dict[str, Any]:
    return {"check_name": name, "status": status, "wedding_critical": wedding_critical}


def alert(name: str, severity: str, status: str = "firing") -> dict[str, Any]:
    return {"alert_name": name, "alert_key": "", "severity": severity, "status": status}


def incident(number: str, severity: str) -> dict[str, Any]:
    return {"incident_number": number, "severity": severity, "title": "Payments down"}


@pytest.mark.parametrize(
    ("inputs", "status", "sources"),
    [
        # everything fine
        ((HEALTHY_API, [], [], []), "healthy", []),
        # the case: API fine, a wedding-critical check critical and a SEV2 open
        (
            (
                HEALTHY_API,
                [check("Payments API", "critical", True)],
                [],
                [incident("INC-7", "SEV2")],
            ),
            "critical",
            ["check", "incident"],
        ),
        # an ordinary check down, or a wedding-critical one warning: degraded
        ((HEALTHY_API, [check("Blog", "critical")], [], []), "degraded", ["check"]),
        ((HEALTHY_API, [check("Photos", "warning", True)], [], []), "degraded", ["check"]),
        # API timings themselves
        ((api("critical", 0.07, 2300), [], [], []), "critical", ["api"]),
        ((api("degraded", 0.02), [], [], []), "degraded", ["api"]),
        # firing critical alerts count, acknowledged ones too; high ones degrade
        ((HEALTHY_API, [], [alert("Queue", "critical")], []), "critical", ["alert"]),
        (
            (HEALTHY_API, [], [alert("Queue", "critical", "acknowledged")], []),
            "critical",
            ["alert"],
        ),
        ((HEALTHY_API, [], [alert("Pool", "high")], []), "degraded", ["alert"]),
        # no data, pending, and lower severities say nothing about health
        (
            (
                HEALTHY_API,
                [],
                [
                    alert("Webhooks", "critical", "no_data"),
                    alert("Queue", "critical", "pending"),
                    alert("Disk", "medium"),
                ],
                [incident("INC-8", "SEV3")],
            ),
            "healthy",
            [],
        ),
        ((HEALTHY_API, [], [], [incident("INC-9", "SEV1")]), "critical", ["incident"]),
        # no traffic is unknown, never healthy; but a known problem outranks it
        ((api("unknown", p95=None), [], [], []), "unknown", ["api"]),
        (
            (api("unknown", p95=None), [check("Blog", "critical")], [], []),
            "degraded",
            ["check", "api"],
        ),
    ],
)
def test_it_combines_every_signal_into_one_status_with_reasons(
    inputs: tuple, status: str, sources: list[str]
) -> None:
    got, reasons = overall_health(*inputs)
    assert got == status
    assert [r.source for r in reasons] == sources


def test_it_lists_the_worst_reasons_first_and_names_them() -> None:
    status, reasons = overall_health(
        api("degraded", 0.02, 900),
        [check("Photos", "warning", True), check("Payments API", "critical", True)],
        [alert("Pool", "high"), alert("Queue backing up", "critical")],
        [incident("INC-7", "SEV2")],
    )
    assert status == "critical"
    assert [r.level for r in reasons] == ["critical"] * 2 + ["degraded"] * 4
    assert reasons[0].message == "Wedding-critical check Payments API is critical"
    assert reasons[1].message == "Critical alert firing: Queue backing up"
    assert "SEV2 incident INC-7 open: Payments down" in [r.message for r in reasons]
    assert "API degraded: 5xx rate 2.0%, p95 900 ms" in [r.message for r in reasons]


# ---------------------------------------------------------------- on the real DB and page
def _critical_check_and_sev2(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(health_checks).values(
                check_name="Payments API",
                check_type="http",
                service_name="payments",
                wedding_critical=True,
                status="critical",
            )
        )
        open_incident(
            conn,
            title="Card payments failing",
            severity="SEV2",
            affected_services=["payments"],
            source="manual",
            created_by="user:ann",
            now=now - timedelta(minutes=20),
        )


def test_it_reads_the_reasons_from_the_database(engine: Engine, now: datetime) -> None:
    _critical_check_and_sev2(engine, now)
    with engine.connect() as conn:
        got = read_overall_health(conn, TimeRange(now - timedelta(hours=1), now))
    assert got["status"] == "critical"
    assert [(r["level"], r["source"]) for r in got["reasons"]] == [
        ("critical", "check"),
        ("degraded", "incident"),
        ("unknown", "api"),
    ]


def test_it_shows_the_status_and_its_reasons_on_the_overview(
    engine: Engine, now: datetime, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    _critical_check_and_sev2(engine, now)
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception
    line = next(m.value for m in at.markdown if m.value.startswith("Overall health"))
    assert "Critical" in line and "Healthy" not in line
    (why,) = [e for e in at.expander if e.label.startswith("Why")]
    text = "\n".join(t.value for t in why.text)
    assert "Critical: Wedding-critical check Payments API is critical" in text
    assert "SEV2 incident" in text and "Card payments failing" in text


def test_it_serves_the_health_and_its_reasons_on_the_overview_api(
    api_server: str, admin_key: str, engine: Engine, real_now: datetime
) -> None:
    _critical_check_and_sev2(engine, real_now)
    reply = httpx.get(
        f"{api_server}/api/monitoring/dashboard/overview?timeRange=1h",
        headers={"X-API-Key": admin_key},
    )
    assert reply.status_code == 200
    health = reply.json()["health"]
    assert health["status"] == "critical"
    assert health["reasons"][0] == {
        "level": "critical",
        "source": "check",
        "message": "Wedding-critical check Payments API is critical",
    }
    assert reply.json()["summary"]["status"] == "unknown"  # API timings alone say nothing
