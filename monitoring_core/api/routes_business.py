"""Business events ingest and the BI Read API (the same read functions the pages use).

Every GET here answers JSON, or CSV with `?format=csv` (the table the route returns).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.body import read_json_items
from monitoring_core.api.deps import count_points, require_ingest, require_read
from monitoring_core.api.params import Text
from monitoring_core.api.routes_ingest import partition_days
from monitoring_core.business.anomalies import ANOMALY_METRICS, kpi_anomalies
from monitoring_core.business.dashboard import business_dashboard, complete_period
from monitoring_core.business.definitions import day_bounds, local_day
from monitoring_core.business.export import to_csv
from monitoring_core.business.forecast import FORECAST_METRICS, forecast_kpis
from monitoring_core.business.funnels import MAX_STEPS, FunnelFilter, FunnelMode, funnel
from monitoring_core.business.ingest import copy_events, validate_events
from monitoring_core.business.kpis import Period, daily_series, kpi_cards, period_of, trends
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.metrics_query import parse_interval
from monitoring_core.timerange import parse_time_range

__all__ = ["router"]

router = APIRouter(tags=["business"])
T = TypeVar("T")
DEFAULT_RANGE = "30d"
MAX_FUNNEL_WINDOW = timedelta(days=90)
Fmt = Annotated[str, Query(pattern="^(json|csv)$")]
# `format=csv` answers text/csv: documented so that clients (and schemathesis) expect it.
_JSON_OR_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}
TimeRangeParam = Annotated[str | None, Query(alias="timeRange")]
FromParam = Annotated[str | None, Query(alias="from")]
ToParam = Annotated[str | None, Query(alias="to")]


def _store(app: Any, items: list[dict[str, Any]]) -> int:
    now = datetime.now(UTC)
    events = validate_events(items, now=now)
    partition_days(app).ensure("business_events", {e.time.astimezone(UTC).date() for e in events})
    with app.state.engine.begin() as conn:
        return copy_events(conn, events)


@router.post(
    "/api/monitoring/business-events",
    status_code=202,
    summary="Ingest business events",
    dependencies=[Depends(require_ingest)],
)
async def ingest_business_events(request: Request) -> JSONResponse:
    """`{event_type, user_id?, organization_id?, session_id?, properties?, revenue?, currency?,
    timestamp?}` or an array of them; all or nothing."""
    items = await read_json_items(
        request, max_bytes=request.app.state.settings.max_body_bytes, allow_text=True
    )
    count_points(request, len(items))
    stats = request.app.state.stats
    try:
        accepted = await run_in_threadpool(_store, request.app, items)
    except InvalidItems:
        stats.count_items("business_events", rejected=len(items))
        raise
    stats.count_items("business_events", accepted=accepted)
    return JSONResponse({"accepted": accepted}, status_code=202)


# ---------------------------------------------------------------- reads
def _period(request: Request, preset: str | None, start: str | None, end: str | None) -> Period:
    now = datetime.now(UTC)
    try:
        tr = parse_time_range(
            preset or (None if start or end else DEFAULT_RANGE), now=now, start=start, end=end
        )
    except ValueError as exc:
        raise InvalidItems([ItemError(None, "timeRange", str(exc))]) from None
    return period_of(tr, request.app.state.live.calendar)


def _names(text: str | None, default: tuple[str, ...], field: str) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()] or list(default)
    if len(names) > 20 or any(len(n) > 200 for n in names):
        raise InvalidItems([ItemError(None, field, "at most 20 names of up to 200 characters")])
    return names


async def _read(request: Request, func: Callable[..., T], **kwargs: Any) -> T:
    def run() -> T:
        with request.app.state.engine.connect() as conn:
            return func(conn, **kwargs)

    return await run_in_threadpool(run)


def _table(rows: list[dict[str, Any]], fmt: str, name: str, key: str) -> Any:
    if fmt == "csv":
        return Response(
            to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return {key: rows}


@router.get("/api/monitoring/dashboard/business", dependencies=[Depends(require_read)])
async def dashboard_business(
    request: Request,
    time_range: TimeRangeParam = None,
    start: FromParam = None,
    end: ToParam = None,
) -> dict[str, Any]:
    """Every section of the Business page: KPI cards, trends, MRR movements, adoption,
    retention, churn risk, anomalies and forecasts."""
    period = _period(request, time_range, start, end)
    tz, now = request.app.state.live.calendar, datetime.now(UTC)
    return await _read(request, business_dashboard, period=period, now=now, tz=tz)


@router.get(
    "/api/monitoring/business/metrics", dependencies=[Depends(require_read)], responses=_JSON_OR_CSV
)
async def business_metrics(
    request: Request,
    time_range: TimeRangeParam = None,
    start: FromParam = None,
    end: ToParam = None,
    metrics: str | None = None,
    format: Fmt = "json",
) -> Any:
    """KPI cards and the daily series of `metrics` (comma-separated rollup names; the cards'
    metrics by default), as the Business page shows them: the range is exactly N days; a card's
    value, previous value, delta and sparkline use N complete days (`complete_period`: a range
    reaching today ends yesterday) against the N before; today so far is the card's `today`
    and the series row with `partial: true`, never inside a delta. CSV: the daily series."""
    period = _period(request, time_range, start, end)
    tz, now = request.app.state.live.calendar, datetime.now(UTC)
    names = _names(
        metrics, ("dau", "wau", "mau", "stickiness", "signups", "revenue", "mrr"), "metrics"
    )
    series = await _read(request, daily_series, names=names, first=period.first, last=period.last)
    today = local_day(now, tz)
    rows = [
        {
            "day": day,
            "metric": name,
            "value": series.get(name, {}).get(day),
            "partial": day >= today,
        }
        for name in names
        for day in period.each_day()
    ]
    if format == "csv":
        return _table(rows, format, "business_metrics", "series")
    cards = await _read(request, kpi_cards, period=period, now=now, tz=tz)
    complete = complete_period(period, now, tz)
    return {
        "period": {"first": period.first, "last": period.last},
        "complete_period": {"first": complete.first, "last": complete.last},
        "partial_day": today if period.first <= today <= period.last else None,
        "kpis": cards,
        "series": rows,
    }


def _funnel_args(
    steps: str, window: str, mode: str, where: str | None, where_values: list[str]
) -> tuple[list[str], timedelta, FunnelMode, FunnelFilter | None]:
    names = [s.strip() for s in steps.split(",") if s.strip()]
    errors = []
    values = tuple(dict.fromkeys(v for v in where_values if v))
    if where and not values:
        errors.append(ItemError(None, "where_value", "give at least one value for `where`"))
    elif values and not where:
        errors.append(ItemError(None, "where", "name the first step's property the values are of"))
    if not 2 <= len(names) <= MAX_STEPS or len(set(names)) != len(names):
        errors.append(ItemError(None, "steps", f"give 2 to {MAX_STEPS} different event types"))
    try:
        span = parse_interval(window)
        if span > MAX_FUNNEL_WINDOW:
            errors.append(ItemError(None, "window", "must be at most 90d"))
    except ValueError as exc:
        errors.append(ItemError(None, "window", str(exc)))
    if mode not in FunnelMode.__members__.values():
        errors.append(ItemError(None, "mode", "must be ordered, strict or any_order"))
    if errors:
        raise InvalidItems(errors)
    return names, span, FunnelMode(mode), FunnelFilter(where, values) if where else None


@router.get(
    "/api/monitoring/business/funnels", dependencies=[Depends(require_read)], responses=_JSON_OR_CSV
)
async def business_funnels(
    request: Request,
    steps: Annotated[str, Query(max_length=2000)],
    window: str = "7d",
    breakdown: Annotated[str | None, Query(max_length=100)] = None,
    mode: str = "ordered",
    where: Annotated[Text | None, Query(max_length=100)] = None,
    where_value: Annotated[list[Text] | None, Query(max_length=50)] = None,
    grain: Annotated[str, Query(pattern="^(day|week|month)$")] = "day",
    top: Annotated[int, Query(ge=1, le=20)] = 5,
    time_range: TimeRangeParam = None,
    start: FromParam = None,
    end: ToParam = None,
    format: Fmt = "json",
) -> Any:
    """Conversion, drop-off and median time per step for users entering step 1 in the range,
    within `window`; `mode` ordered, strict or any_order; `breakdown` names a property of the
    first step's event; `where` + `where_value` (repeatable) keep only users whose first step's
    property is one of the values; `grain` buckets the conversion trend."""
    names, span, funnel_mode, first_step = _funnel_args(
        steps, window, mode, where, where_value or []
    )
    period = _period(request, time_range, start, end)
    lo, hi = day_bounds(period.first, period.last, request.app.state.live.calendar)
    result = await _read(
        request,
        funnel,
        steps=names,
        start=lo,
        end=min(hi, datetime.now(UTC)),
        window=span,
        mode=funnel_mode,
        breakdown=breakdown or None,
        top=top,
        where=first_step,
        grain=grain,
        tz=request.app.state.live.calendar,
    )
    if format == "csv":
        return _table(result.rows(), format, "funnel", "rows")
    return {
        "steps": result.steps,
        "median_seconds_to_convert": result.median_seconds_to_convert,
        "window_seconds": span.total_seconds(),
        "mode": funnel_mode.value,
        "where": (
            {"property": first_step.prop, "values": list(first_step.values)} if first_step else None
        ),
        "breakdown_property": breakdown,
        "breakdown": [{"value": k, "steps": v} for k, v in result.breakdown.items()],
        "trend": [
            {
                "period": t.period,
                "entered": t.entered,
                "converted": t.converted,
                "conversion_rate": t.conversion_rate,
            }
            for t in result.trend
        ],  # fmt: skip
        "time_to_convert": [
            {"from_seconds": lo, "to_seconds": hi, "users": n}
            for lo, hi, n in result.time_to_convert
        ],
    }


@router.get(
    "/api/monitoring/analytics/trends", dependencies=[Depends(require_read)], responses=_JSON_OR_CSV
)
async def analytics_trends(
    request: Request,
    metrics: str | None = None,
    time_range: TimeRangeParam = None,
    start: FromParam = None,
    end: ToParam = None,
    format: Fmt = "json",
) -> Any:
    """Daily KPI values with a trailing 7-day mean."""
    names = _names(metrics, ("dau", "signups", "revenue", "form_completion_rate"), "metrics")
    period = _period(request, time_range, start, end)
    rows = await _read(request, trends, names=names, period=period)
    return _table(rows, format, "trends", "trends")


@router.get(
    "/api/monitoring/analytics/anomalies",
    dependencies=[Depends(require_read)],
    responses=_JSON_OR_CSV,
)
async def analytics_anomalies(
    request: Request,
    metrics: str | None = None,
    threshold: Annotated[float, Query(gt=0, le=100)] = 3.5,
    time_range: TimeRangeParam = None,
    start: FromParam = None,
    end: ToParam = None,
    format: Fmt = "json",
) -> Any:
    """KPI days whose robust z-score against the same weekday of 8 past weeks is >= threshold
    (complete days only)."""
    names = _names(metrics, ANOMALY_METRICS, "metrics")
    period = complete_period(
        _period(request, time_range, start, end), datetime.now(UTC), request.app.state.live.calendar
    )
    flags = await _read(request, kpi_anomalies, period=period, metrics=names, threshold=threshold)
    return _table([f.row() for f in flags], format, "anomalies", "anomalies")


@router.get(
    "/api/monitoring/analytics/forecasts",
    dependencies=[Depends(require_read)],
    responses=_JSON_OR_CSV,
)
async def analytics_forecasts(
    request: Request,
    metrics: str | None = None,
    horizon: Annotated[int, Query(ge=1, le=60)] = 14,
    format: Fmt = "json",
) -> Any:
    """The next `horizon` days of each metric (DAU and revenue by default) with a 95 % band,
    from the last 8 complete weeks."""
    names = _names(metrics, FORECAST_METRICS, "metrics")
    tz, now = request.app.state.live.calendar, datetime.now(UTC)
    last = local_day(now, tz) - timedelta(days=1)  # the last complete business day
    points = await _read(request, forecast_kpis, last_day=last, metrics=names, horizon=horizon)
    return _table([p.row() for p in points], format, "forecasts", "forecasts")
