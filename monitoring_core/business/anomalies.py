"""KPI anomaly flags: robust z-score of a day against the same weekday of past weeks.

z = (x - median) / (1.4826 x MAD) over the same weekday of the previous `weeks` weeks; the
scale has a floor (2 % of the median) so that a perfectly flat history does not flag noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from statistics import median

from sqlalchemy import Connection

from monitoring_core.business.kpis import Period, daily_series

__all__ = ["ANOMALY_METRICS", "AnomalyFlag", "kpi_anomalies", "robust_z", "same_weekday_flags"]

ANOMALY_METRICS = (
    "dau",
    "signups",
    "form_completion_rate",
    "journey_completion_rate",
    "revenue",
    "events",
)
MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of the standard deviation
MIN_SCALE_SHARE = 0.02


@dataclass(frozen=True)
class AnomalyFlag:
    day: date
    metric: str
    value: float
    expected: float
    z: float
    direction: str  # up | down

    def row(self) -> dict[str, object]:
        return asdict(self)


def robust_z(value: float, history: Sequence[float]) -> tuple[float, float]:
    """(z, median) of value against history (pure)."""
    mid = median(history)
    mad = median(abs(x - mid) for x in history)
    scale = max(MAD_SCALE * mad, MIN_SCALE_SHARE * abs(mid), 1e-9)
    return (value - mid) / scale, mid


def same_weekday_flags(
    metric: str,
    series: Mapping[date, float],
    days: Iterable[date],
    *,
    weeks: int = 8,
    threshold: float = 3.5,
    min_history: int = 4,
) -> list[AnomalyFlag]:
    """Days whose value is more than `threshold` robust z-scores from its weekday's history."""
    flags = []
    for day in days:
        if day not in series:
            continue
        history = [
            series[d] for k in range(1, weeks + 1) if (d := day - timedelta(weeks=k)) in series
        ]
        if len(history) < min_history:
            continue
        z, expected = robust_z(series[day], history)
        if abs(z) >= threshold:
            flags.append(
                AnomalyFlag(day, metric, series[day], expected, z, "up" if z > 0 else "down")
            )
    return flags


def kpi_anomalies(
    conn: Connection,
    *,
    period: Period,
    metrics: Sequence[str] = ANOMALY_METRICS,
    weeks: int = 8,
    threshold: float = 3.5,
) -> list[AnomalyFlag]:
    """Anomalous KPI days in the period, newest first."""
    first = period.first - timedelta(weeks=weeks)
    series = daily_series(conn, names=metrics, first=first, last=period.last)
    flags = [
        flag
        for m in metrics
        for flag in same_weekday_flags(
            m, series.get(m, {}), period.each_day(), weeks=weeks, threshold=threshold
        )
    ]
    return sorted(flags, key=lambda f: (f.day, f.metric), reverse=True)
