"""Runners: the I/O of one check run. Each returns an `Outcome` and never raises.

Timeouts apply per network operation (connect, each read), like urllib's and libpq's; a run
whose total time exceeds `timeout_seconds` is also judged a failure. Bodies are read up to
MAX_BODY_BYTES for the keyword search and never stored.

HTTP and TCP targets go through the outbound policy (`monitoring_core.outbound`): no
link-local or cloud metadata address, redirects only when the check sets `follow_redirects`,
and no header that only a metadata service asks for.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from monitoring_core import outbound
from monitoring_core.collectors.readonly import run_readonly_query
from monitoring_core.health.custom import run_custom
from monitoring_core.health.rules import Outcome, evaluate_http

__all__ = ["MAX_BODY_BYTES", "PROBES", "run_probe"]

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1_048_576


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def probe_http(config: dict[str, Any], timeout: float) -> Outcome:
    method = str(config.get("method", "GET")).upper()
    headers = {"User-Agent": "wedding-monitoring-health/1.0", **config.get("headers", {})}
    refused = sorted(h for h in headers if str(h).lower() in outbound.METADATA_HEADERS)
    if refused:
        return Outcome(False, f"refused: header {refused[0]} is for cloud metadata services")
    request = urllib.request.Request(str(config["url"]), method=method, headers=headers)
    follow = bool(config.get("follow_redirects", False))
    start = time.perf_counter()
    try:
        # No proxies from the environment: checks measure the service, not a proxy in between.
        with outbound.open_url(
            request, timeout=timeout, policy=outbound.current_policy(), follow_redirects=follow
        ) as response:
            status, raw = response.status, response.read(MAX_BODY_BYTES)
    except outbound.TargetRefused as exc:
        return Outcome(False, f"refused: {exc}", _ms(start))
    except urllib.error.HTTPError as exc:  # 4xx/5xx still answer: judge them like the rest
        status, raw = exc.code, exc.read(MAX_BODY_BYTES)
        exc.close()
    except TimeoutError:
        return Outcome(False, f"timed out after {timeout:g} s", _ms(start))
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return Outcome(False, f"timed out after {timeout:g} s", _ms(start))
        return Outcome(False, f"cannot connect: {exc.reason}", _ms(start))
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, f"connection failed: {type(exc).__name__}: {exc}"[:300], _ms(start))
    elapsed = _ms(start)
    if elapsed > timeout * 1000.0:
        return Outcome(False, f"timed out after {timeout:g} s", elapsed)
    return evaluate_http(config, status, raw.decode("utf-8", "replace"), elapsed)


def probe_tcp(config: dict[str, Any], timeout: float) -> Outcome:
    host, port = str(config["host"]), int(config["port"])
    start = time.perf_counter()
    try:
        with outbound.connect_tcp((host, port), timeout, policy=outbound.current_policy()):
            elapsed = _ms(start)
    except outbound.TargetRefused as exc:
        return Outcome(False, f"refused: {exc}", _ms(start))
    except TimeoutError:
        return Outcome(False, f"timed out connecting to {host}:{port}", _ms(start))
    except OSError as exc:
        return Outcome(False, f"cannot connect to {host}:{port}: {exc.strerror or exc}", _ms(start))
    return Outcome(True, f"connected to {host}:{port} in {elapsed:.0f} ms", elapsed)


def probe_database(config: dict[str, Any], timeout: float) -> Outcome:
    query = str(config.get("query") or "SELECT 1")
    start = time.perf_counter()
    try:
        run_readonly_query(str(config["url"]), query, timeout=timeout, max_rows=1, truncate=True)
    except Exception as exc:  # noqa: BLE001 - any driver error is the check's failure
        return Outcome(False, _db_error(exc), _ms(start))
    elapsed = _ms(start)
    return Outcome(True, f"query answered in {elapsed:.0f} ms", elapsed)


def _db_error(exc: Exception) -> str:
    """The driver's first message line; SQLAlchemy's wrapper adds the SQL and a link."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first}"[:300]


def probe_custom(config: dict[str, Any], timeout: float) -> Outcome:
    start = time.perf_counter()
    outcome = run_custom(config, timeout)
    if outcome.response_time_ms is None:
        return Outcome(outcome.success, outcome.message, _ms(start), outcome.status)
    return outcome


PROBES: dict[str, Callable[[dict[str, Any], float], Outcome]] = {
    "http": probe_http,
    "tcp": probe_tcp,
    "database": probe_database,
    "custom": probe_custom,
}


def run_probe(check_type: str, config: dict[str, Any], timeout: float) -> Outcome:
    """Run one check; a bug or a bad config is a failed run with a message, never a raise."""
    probe = PROBES.get(check_type)
    if probe is None:
        return Outcome(False, f"no runner for check type {check_type!r}")
    try:
        return probe(config, timeout)
    except Exception as exc:
        log.warning("health probe %s failed unexpectedly", check_type, exc_info=True)
        return Outcome(False, f"check error: {type(exc).__name__}: {exc}"[:300])
