"""Scrape a Prometheus `/metrics` endpoint: the text format becomes points at `now`.

Like Prometheus, the scrape adds `job` (the collector's name) and `instance` (host:port) to
every sample's labels; samples' own timestamps are ignored (the scrape time is used).
"""

from __future__ import annotations

import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

from monitoring_core.ingest.points import MetricPoint
from monitoring_core.prometheus.parser import parse_exposition

__all__ = ["MAX_SCRAPE_BYTES", "ScrapeCollector"]

MAX_SCRAPE_BYTES = 10 * 1024 * 1024
SOURCE_SYSTEM = "prometheus_scrape"
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ScrapeError(RuntimeError):
    """The target answered something we cannot use."""


class ScrapeCollector:
    def __init__(
        self, *, name: str, url: str, interval_seconds: int = 60, timeout_seconds: float = 10.0
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._url = url
        self._timeout = timeout_seconds

    def fetch(self) -> bytes:
        request = urllib.request.Request(self._url, headers={"Accept": _ACCEPT})
        with _OPENER.open(request, timeout=self._timeout) as response:
            body: bytes = response.read(MAX_SCRAPE_BYTES + 1)
        if len(body) > MAX_SCRAPE_BYTES:
            raise ScrapeError(f"scrape body over {MAX_SCRAPE_BYTES} bytes")
        return body

    def collect(self, now: datetime) -> list[MetricPoint]:
        parsed = parse_exposition(self.fetch())
        target = {"job": self.name, "instance": urlsplit(self._url).netloc}
        return [
            MetricPoint(s.name, s.value, now, {**s.labels, **target}, SOURCE_SYSTEM)
            for s in parsed.samples
        ]
