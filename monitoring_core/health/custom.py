"""Custom checks: Python callables registered by name, chosen by `check_config.callable`.

Only registered callables run (never an import path from the database), so an admin form
cannot make the worker execute arbitrary code. A callable takes the check's config and
returns True/False, an `Outcome`, or raises (a failure with the exception's message).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from monitoring_core.health.rules import Outcome

__all__ = ["CUSTOM_CHECKS", "CustomCheck", "register_custom_check", "run_custom"]

CustomCheck = Callable[[dict[str, Any]], "bool | Outcome"]
CUSTOM_CHECKS: dict[str, CustomCheck] = {}


def register_custom_check(name: str) -> Callable[[CustomCheck], CustomCheck]:
    """Decorator: make `func` available to checks whose config says `{"callable": name}`."""

    def decorate(func: CustomCheck) -> CustomCheck:
        CUSTOM_CHECKS[name] = func
        return func

    return decorate


def run_custom(config: dict[str, Any], timeout: float) -> Outcome:
    name = str(config.get("callable", ""))
    func = CUSTOM_CHECKS.get(name)
    if func is None:
        known = ", ".join(sorted(CUSTOM_CHECKS)) or "none"
        return Outcome(False, f"no custom check named {name!r} (registered: {known})")
    try:
        result = func(config)
    except Exception as exc:  # noqa: BLE001 - the callable's failure is the check's failure
        return Outcome(False, f"{type(exc).__name__}: {exc}"[:300])
    if isinstance(result, Outcome):
        return result
    return Outcome(bool(result), "ok" if result else f"{name} returned False")


@register_custom_check("disk_free")
def disk_free(config: dict[str, Any]) -> Outcome:
    """Healthy while the filesystem at `path` has at least `min_free_percent` free."""
    usage = shutil.disk_usage(str(config.get("path", "/")))
    free = 100.0 * usage.free / usage.total
    minimum = float(config.get("min_free_percent", 10))
    ok = free >= minimum
    return Outcome(ok, f"{free:.1f} % free (minimum {minimum:g} %)")


@register_custom_check("demo_flapping")
def demo_flapping(config: dict[str, Any]) -> Outcome:
    """The demo's flaky dependency: fails during 2 minutes of every `cycle_minutes` (7)."""
    from datetime import UTC, datetime  # the probe edge reads the clock, like a network call

    cycle = int(config.get("cycle_minutes", 7))
    minute = datetime.now(UTC).minute % cycle
    if minute < 2:
        return Outcome(False, f"partner API answered 502 (demo flap, minute {minute} of {cycle})")
    return Outcome(True, "partner API answered 200")
