"""Incident jobs: escalation pages, figures as metrics, sent pages on timelines (thin adapters)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["escalate_incidents", "incident_metrics", "incident_notifications"]


def escalate_incidents(engine: Engine, now: datetime) -> str:
    """Page unacknowledged SEV1/SEV2 incidents (singleton): one transaction per round."""
    from monitoring_core.config import load_settings
    from monitoring_core.incidents.escalation import escalate_incidents as escalate
    from monitoring_core.live_settings import read_live

    settings = load_settings()
    with engine.begin() as conn:
        tz = read_live(conn, settings).calendar
        sent = escalate(conn, now=now, tz=tz, public_url=settings.public_url)
    return f"{sent} incident pages"


def incident_metrics(engine: Engine, now: datetime) -> str:
    """Incident figures as metrics, so rules can alert on a slow MTTA."""
    from monitoring_core.incidents.response_figures import record_incident_metrics

    with engine.begin() as conn:
        return f"{record_incident_metrics(conn, now=now)} incident metric points"


def incident_notifications(engine: Engine, now: datetime) -> str:
    """Sent and failed pages of an incident onto its timeline."""
    from monitoring_core.incidents.notifications import record_notifications

    with engine.begin() as conn:
        return f"{record_notifications(conn, now=now)} notifications on incident timelines"
