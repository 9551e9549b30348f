"""Scrape a Prometheus `/metrics` endpoint: the text format becomes points at `now`.

Like Prometheus, the scrape adds `job` (the collector's name) and `instance` (host:port) to
every sample's labels; samples' own timestamps are ignored (the scrape time is used).

The target is held to the outbound policy (`monitoring_core.outbound`) and redirects are not
followed. An answer that is not exposition format fails the scrape with its line number, size
and hash, never its text: `last_error` is readable by more people than the target is.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import urlsplit

from monitoring_core import outbound
from monitoring_core.ingest.points import MetricPoint
from monitoring_core.prometheus.parser import ExpositionError, parse_exposition

__all__ = ["MAX_SCRAPE_BYTES", "ScrapeCollector"]

MAX_SCRAPE_BYTES = 10 * 1024 * 1024
SOURCE_SYSTEM = "prometheus_scrape"
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


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
        policy = outbound.current_policy()
        try:
            with outbound.open_url(request, timeout=self._timeout, policy=policy) as response:
                body: bytes = response.read(MAX_SCRAPE_BYTES + 1)
        except urllib.error.HTTPError as exc:  # the status, not the target's reason phrase
            exc.close()
            raise ScrapeError(f"HTTP {exc.code}") from None
        if len(body) > MAX_SCRAPE_BYTES:
            raise ScrapeError(f"scrape body over {MAX_SCRAPE_BYTES} bytes")
        return body

    def collect(self, now: datetime) -> list[MetricPoint]:
        body = self.fetch()
        try:
            parsed = parse_exposition(body)
        except ExpositionError as exc:  # its message quotes the line: say where, not what
            digest = hashlib.sha256(body).hexdigest()
            raise ScrapeError(
                f"not Prometheus exposition format (line {exc.line}; "
                f"{len(body)} bytes, sha256 {digest})"
            ) from None
        target = {"job": self.name, "instance": urlsplit(self._url).netloc}
        return [
            MetricPoint(s.name, s.value, now, {**s.labels, **target}, SOURCE_SYSTEM)
            for s in parsed.samples
        ]
