"""Monitoring, alerting, incident and BI core library for the wedding platform."""

__all__: list[str] = []
