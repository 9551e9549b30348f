"""The host's CPU, memory, swap, disks and network through psutil.

psutil is a constructor argument (as prometheus_client's `ProcessCollector(proc=…)` takes its
/proc), so a test can hand in a stand-in. Network rates need two samples: the first call
only remembers the counters, later calls emit bytes per second since the previous one.

CPU busy % is computed here from `cpu_times()` deltas against a baseline this instance keeps,
not with `psutil.cpu_percent(interval=None)`: that one measures since the *previous call in
the same thread, by anyone*, so any other caller (or a second collector being built) resets it
and the next reading covers a few microseconds: 0.0, or now and then 100.0. A window shorter
than MIN_CPU_WINDOW_S (CPU time summed over cores, divided by their number: wall time) gives
no CPU point and keeps the baseline, so the next reading covers the longer window.
"""

from __future__ import annotations

import socket
from datetime import datetime
from types import ModuleType
from typing import Any

import psutil

from monitoring_core.ingest.points import MetricPoint

__all__ = ["MIN_CPU_WINDOW_S", "SystemCollector", "cpu_busy_percent"]

SOURCE_SYSTEM = "system"
_SKIP_FSTYPES = {"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs"}
MIN_CPU_WINDOW_S = 0.25  # ~25 clock ticks per core: a coarser window reads 0 or 100
# Linux counts guest time inside user/nice already (psutil's own total leaves them out too).
_NOT_IN_TOTAL = {"guest", "guest_nice"}
_IDLE = {"idle", "iowait"}


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Seconds busy and seconds in total from a `cpu_times()` result (or a stand-in)."""
    fields = times._asdict() if hasattr(times, "_asdict") else vars(times)
    total = sum(v for k, v in fields.items() if k not in _NOT_IN_TOTAL)
    idle = sum(v for k, v in fields.items() if k in _IDLE)
    return total - idle, total


def cpu_busy_percent(before: Any, after: Any, cpus: int = 1) -> float | None:
    """Busy share of the CPU between two `cpu_times()` samples; None for too short a window."""
    busy0, total0 = _busy_and_total(before)
    busy1, total1 = _busy_and_total(after)
    window = total1 - total0
    if window < MIN_CPU_WINDOW_S * max(cpus, 1):
        return None
    return round(min(max((busy1 - busy0) / window, 0.0), 1.0) * 100, 1)


class SystemCollector:
    name = "system"

    def __init__(
        self,
        *,
        interval_seconds: int = 30,
        disk_paths: tuple[str, ...] | None = None,
        host: str | None = None,
        ps: ModuleType | Any = psutil,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._ps = ps
        self._host = host or socket.gethostname()
        self._disk_paths = disk_paths
        self._last_net: tuple[datetime, dict[str, tuple[int, int]]] | None = None
        self._cpu_baseline = ps.cpu_times()  # the first reading covers the time since now
        self._cpus = (ps.cpu_count() if hasattr(ps, "cpu_count") else None) or 1

    def collect(self, now: datetime) -> list[MetricPoint]:
        points = self._cpu_memory(now)
        points += self._disks(now)
        points += self._network(now)
        return points

    def _point(self, name: str, value: float, now: datetime, **dims: str) -> MetricPoint:
        return MetricPoint(name, float(value), now, {"host": self._host, **dims}, SOURCE_SYSTEM)

    def _cpu_memory(self, now: datetime) -> list[MetricPoint]:
        ps = self._ps
        memory, swap = ps.virtual_memory(), ps.swap_memory()
        load1, _, _ = ps.getloadavg()
        points = [
            self._point("system_load1", load1, now),
            self._point("system_memory_used_percent", memory.percent, now),
            self._point("system_memory_available_bytes", memory.available, now),
            self._point("system_swap_used_percent", swap.percent, now),
        ]
        times = ps.cpu_times()
        busy = cpu_busy_percent(self._cpu_baseline, times, self._cpus)
        if busy is not None:
            self._cpu_baseline = times
            points.insert(0, self._point("system_cpu_percent", busy, now))
        return points

    def _mounts(self) -> list[str]:
        if self._disk_paths is not None:
            return list(self._disk_paths)
        parts = self._ps.disk_partitions(all=False)
        mounts = sorted({p.mountpoint for p in parts if p.fstype not in _SKIP_FSTYPES})
        return mounts or ["/"]

    def _disks(self, now: datetime) -> list[MetricPoint]:
        points = []
        for mount in self._mounts():
            try:
                usage = self._ps.disk_usage(mount)
            except OSError:
                continue  # unmounted since we listed it, or no permission
            points.append(self._point("system_disk_used_percent", usage.percent, now, mount=mount))
            points.append(self._point("system_disk_free_bytes", usage.free, now, mount=mount))
        return points

    def _network(self, now: datetime) -> list[MetricPoint]:
        counters = {
            nic: (c.bytes_sent, c.bytes_recv)
            for nic, c in self._ps.net_io_counters(pernic=True).items()
            if nic != "lo"
        }
        previous, self._last_net = self._last_net, (now, counters)
        if previous is None:
            return []
        seconds = (now - previous[0]).total_seconds()
        if seconds <= 0:
            return []
        points = []
        for nic, (sent, received) in counters.items():
            if nic not in previous[1]:
                continue
            old_sent, old_received = previous[1][nic]
            # A counter that went backwards was reset (interface re-created): skip one sample.
            if sent >= old_sent and received >= old_received:
                rate = (sent - old_sent) / seconds
                points.append(
                    self._point("system_network_sent_bytes_per_second", rate, now, interface=nic)
                )
                rate = (received - old_received) / seconds
                points.append(
                    self._point(
                        "system_network_received_bytes_per_second", rate, now, interface=nic
                    )
                )
        return points
