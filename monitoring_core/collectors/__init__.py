"""Collectors: system (psutil), database (pg_stat_*), admin SQL queries, Prometheus scrapes."""

from monitoring_core.collectors.base import Collector, MetricPoint

__all__ = ["Collector", "MetricPoint"]
