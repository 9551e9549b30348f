"""Scrape a Prometheus `/metrics` endpoint: the text format becomes points at `now`.

Like Prometheus, the scrape adds `job` (the collector's name) and `instance` (host:port) to
every sample's labels; samples' own timestamps are ignored (the scrape time is used).

Credentials in the URL (`http://USER:PASSWORD@host/metrics`) are sent as HTTP Basic, as
Prometheus' `basic_auth` does (this system's own `/metrics` takes a read key as the password),
and never appear in the URL requested.

The target is held to the outbound policy (`monitoring_core.outbound`) and redirects are not
followed. An answer that is not exposition format fails the scrape with its line number, size
and hash, never its text: `last_error` is readable by more people than the target is.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
from datetime import datetime
from urllib.parse import unquote, urlsplit, urlunsplit

from monitoring_core import outbound
from monitoring_core.ingest.points import MetricPoint
from monitoring_core.prometheus.parser import ExpositionError, parse_exposition

__all__ = ["MAX_SCRAPE_BYTES", "ScrapeCollector"]

MAX_SCRAPE_BYTES = 10 * 1024 * 1024
SOURCE_SYSTEM = "prometheus_scrape"
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


class ScrapeError(RuntimeError):
    """The target answered something we cannot use."""


def _basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """The URL without `user:password@`, and the Authorization header those make."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.netloc.rsplit("@", 1)[1]
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(pair.encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


class ScrapeCollector:
    def __init__(
        self, *, name: str, url: str, interval_seconds: int = 60, timeout_seconds: float = 10.0
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._url = url
        self._timeout = timeout_seconds

    def fetch(self) -> bytes:
        url, headers = _basic_auth(self._url)
        request = urllib.request.Request(url, headers={"Accept": _ACCEPT, **headers})
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
        instance = urlsplit(self._url).netloc.rsplit("@", 1)[-1]  # never the credentials
        target = {"job": self.name, "instance": instance}
        return [
            MetricPoint(s.name, s.value, now, {**s.labels, **target}, SOURCE_SYSTEM)
            for s in parsed.samples
        ]
