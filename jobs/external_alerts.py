"""Worker adapter: resolve alerts from Prometheus/Grafana that were not re-sent by endsAt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["expire_external_alerts"]


def expire_external_alerts(engine: Engine, now: datetime) -> str:
    from monitoring_core.config import load_settings
    from monitoring_core.flows.external_alerts import expire_external
    from monitoring_core.live_settings import read_live

    settings = load_settings()
    with engine.begin() as conn:
        tz = read_live(conn, settings).calendar
        resolved = expire_external(conn, now=now, tz=tz, public_url=settings.public_url)
    return f"{resolved} external alerts resolved past their endsAt"
