"""Worker adapter: resolve alerts from Prometheus/Grafana that were not re-sent by endsAt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["expire_external_alerts"]


def expire_external_alerts(engine: Engine, now: datetime) -> str:
    from monitoring_core.config import load_settings
    from monitoring_core.flows.external_alerts import expire_external

    settings = load_settings()
    with engine.begin() as conn:
        resolved = expire_external(conn, now=now, tz=settings.tz, public_url=settings.public_url)
    return f"{resolved} external alerts resolved past their endsAt"
