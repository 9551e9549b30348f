"""The API's own metrics in Prometheus text format (exposition 0.0.4), kept in-process.

Hand-rolled rather than prometheus_client: four metric families need ~80 lines, the runtime
gains no dependency, and the counters are per process either way (prometheus_client's
multi-process mode would need a shared directory). With several uvicorn workers, each
scrape sees one worker's counters, like any multi-process exporter without aggregation.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiStats", "StatsMiddleware"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class ApiStats:
    """Counters of requests, items and latency; `render()` gives the text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.items: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts + [sum, count]
        self.extra: list[Callable[[], str]] = []  # other parts may add text-format families

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            hist = self.latency.setdefault(route, [0.0] * (len(LATENCY_BUCKETS) + 2))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def count_items(self, kind: str, *, accepted: int = 0, rejected: int = 0) -> None:
        with self._lock:
            if accepted:
                self.items[(kind, "accepted")] += accepted
            if rejected:
                self.items[(kind, "rejected")] += rejected

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP monitoring_api_requests_total HTTP requests by route and status.",
                "# TYPE monitoring_api_requests_total counter",
            ]
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'monitoring_api_requests_total{{method="{method}",route="{_label(route)}",'
                    f'status="{status}"}} {n}'
                )
            lines += [
                "# HELP monitoring_api_items_total Ingested items by kind and outcome.",
                "# TYPE monitoring_api_items_total counter",
            ]
            for (kind, outcome), n in sorted(self.items.items()):
                lines.append(
                    f'monitoring_api_items_total{{kind="{_label(kind)}",outcome="{outcome}"}} {n}'
                )
            lines += self._latency_lines()
        text = "\n".join(lines) + "\n"
        return text + "".join(extra() for extra in self.extra)

    def _latency_lines(self) -> list[str]:
        lines = [
            "# HELP monitoring_api_request_duration_seconds Request latency by route.",
            "# TYPE monitoring_api_request_duration_seconds histogram",
        ]
        for route, hist in sorted(self.latency.items()):
            name = "monitoring_api_request_duration_seconds"
            r = _label(route)
            for bound, n in zip(LATENCY_BUCKETS, hist, strict=False):
                lines.append(f'{name}_bucket{{route="{r}",le="{bound}"}} {int(n)}')
            lines.append(f'{name}_bucket{{route="{r}",le="+Inf"}} {int(hist[-1])}')
            lines.append(f'{name}_sum{{route="{r}"}} {hist[-2]:.6f}')
            lines.append(f'{name}_count{{route="{r}"}} {int(hist[-1])}')
        return lines


class StatsMiddleware:
    """Times every HTTP request and counts it by its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, stats: ApiStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label so scanners cannot blow up the series count.
            path = getattr(route, "path", "unmatched")
            self.stats.observe_request(scope["method"], path, status, time.perf_counter() - start)
