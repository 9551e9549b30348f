"""Collectors: system (psutil), database (pg_stat_*), admin SQL queries, Prometheus scrapes."""

from monitoring_core.collectors.base import Collector

__all__ = ["Collector"]
