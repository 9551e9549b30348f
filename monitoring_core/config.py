"""The only place that reads the environment: strict parsing, `NAME_FILE` secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(ValueError):
    """An environment variable has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    api_port: int
    tz_name: str
    max_body_bytes: int
    eval_interval_s: float
    public_url: str
    api_public_url: str
    ui_port: int = 8501
    demo: bool = True
    heartbeat_url: str | None = None  # pinged by the worker every minute (Healthchecks-style)
    database_reader_url: str | None = None  # the read-only role for `self` queries
    database_scoped_url: str | None = None  # the role organisation-scoped users read as
    # outbound targets (monitoring_core.outbound): refuse private/loopback ranges too, and an
    # allow-list of host names, .suffix names and CIDRs (empty: no allow-list)
    outbound_deny_private: bool = False
    outbound_allow: tuple[str, ...] = ()
    # per-key limits for keys that do not set their own (api_keys columns NULL); 0: unlimited
    key_requests_per_minute: int = 12_000
    key_points_per_minute: int = 600_000
    # network: the address the API and the UI listen on (loopback unless told otherwise), and
    # whether /metrics, /docs, /redoc and /openapi.json answer without a read key
    bind_host: str = "127.0.0.1"
    open_service_routes: bool = False
    # cardinality limits (API): series one metric may have (new series past it are refused,
    # existing ones stay writable), series one metrics query may return
    max_series_per_metric: int = 10_000
    max_query_series: int = 500
    # PromQL (API): samples one query may hold in memory at once (Prometheus'
    # --query.max-samples; prometheus/promql/model.MAX_SAMPLES), queries evaluated at once
    promql_max_samples: int = 3_000_000
    promql_concurrency: int = 1
    session_idle_minutes: int = 60  # a UI session idle this long is signed out on its next run
    # single sign-on (ui/auth_oidc.py): an unknown verified e-mail gets a viewer account
    oidc_auto_create_viewers: bool = False
    # the identity provider `make run` configures Streamlit's OIDC login with (all three set)
    oidc_metadata_url: str | None = None  # its /.well-known/openid-configuration
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)  # or ..._SECRET_FILE
    # a second port the API also listens on, for OTLP/HTTP exporters (4318 by convention); 0: none
    otlp_port: int = 0
    # log records one service may store per UTC day (more are refused and counted); 0: no cap
    log_records_per_service_day: int = 10_000_000
    # a streaming replica for page and read-API queries (monitoring_core.replica); reads fall
    # back to the primary while it is down or lags more than replica_max_lag_s
    database_read_url: str | None = None
    replica_max_lag_s: float = 30.0
    api_processes: int = 2  # API processes: 1.32x one on 2 cores (bench/scale.py)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz_name)


def _read(env: Mapping[str, str], name: str) -> str | None:
    """Value of NAME, or the contents of the file named by NAME_FILE (for secrets)."""
    if name in env and env[name] != "":
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
    return None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _read(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _read(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 0/1/true/false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list; blanks dropped."""
    return tuple(item.strip() for item in (_read(env, name) or "").split(",") if item.strip())


def _tz(env: Mapping[str, str]) -> str:
    name = _read(env, "MONITORING_TZ") or "Europe/London"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"MONITORING_TZ={name!r} is not a known time zone") from exc
    return name


def _database_url(env: Mapping[str, str], name: str = "DATABASE_URL") -> str | None:
    url = _read(env, name)
    if url is None:
        return None
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # Accept libpq-style URLs too; SQLAlchemy needs the driver named.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("postgresql+psycopg://"):
        raise ConfigError(f"{name} must be a postgresql+psycopg:// URL")
    return url


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    url = _read(env, name)
    if url is not None and not (url.startswith("http://") or url.startswith("https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (or the mapping given, for tests)."""
    env = os.environ if env is None else env
    return Settings(
        database_url=_database_url(env),
        data_dir=Path(_read(env, "MONITORING_DATA_DIR") or ".data").resolve(),
        api_port=_int(env, "MONITORING_API_PORT", 8000),
        tz_name=_tz(env),
        max_body_bytes=_int(env, "MONITORING_MAX_BODY_BYTES", 5_242_880),
        eval_interval_s=_float(env, "MONITORING_EVAL_INTERVAL_S", 15.0),
        public_url=(_read(env, "MONITORING_PUBLIC_URL") or "http://localhost:8501").rstrip("/"),
        api_public_url=(
            _read(env, "MONITORING_API_PUBLIC_URL")
            or f"http://localhost:{_int(env, 'MONITORING_API_PORT', 8000)}"
        ).rstrip("/"),
        ui_port=_int(env, "MONITORING_UI_PORT", 8501),
        demo=_bool(env, "DEMO", True),
        database_reader_url=_database_url(env, "DATABASE_READER_URL"),
        database_scoped_url=_database_url(env, "DATABASE_SCOPED_URL"),
        outbound_deny_private=_bool(env, "MONITORING_OUTBOUND_DENY_PRIVATE", False),
        outbound_allow=_list(env, "MONITORING_OUTBOUND_ALLOW"),
        key_requests_per_minute=_int(env, "MONITORING_KEY_REQUESTS_PER_MINUTE", 12_000, 0),
        key_points_per_minute=_int(env, "MONITORING_KEY_POINTS_PER_MINUTE", 600_000, 0),
        bind_host=_read(env, "MONITORING_BIND_HOST") or "127.0.0.1",
        open_service_routes=_bool(env, "MONITORING_OPEN_SERVICE_ROUTES", False),
        heartbeat_url=_http_url(env, "MONITORING_HEARTBEAT_URL"),
        max_series_per_metric=_int(env, "MONITORING_MAX_SERIES_PER_METRIC", 10_000),
        max_query_series=_int(env, "MONITORING_MAX_QUERY_SERIES", 500),
        promql_max_samples=_int(env, "MONITORING_PROMQL_MAX_SAMPLES", 3_000_000),
        promql_concurrency=_int(env, "MONITORING_PROMQL_CONCURRENCY", 1),
        session_idle_minutes=_int(env, "MONITORING_SESSION_IDLE_MINUTES", 60),
        oidc_auto_create_viewers=_bool(env, "MONITORING_OIDC_AUTO_CREATE_VIEWERS", False),
        oidc_metadata_url=_http_url(env, "MONITORING_OIDC_METADATA_URL"),
        oidc_client_id=_read(env, "MONITORING_OIDC_CLIENT_ID"),
        oidc_client_secret=_read(env, "MONITORING_OIDC_CLIENT_SECRET"),
        otlp_port=_int(env, "MONITORING_OTLP_PORT", 0, 0),
        log_records_per_service_day=_int(
            env, "MONITORING_LOG_RECORDS_PER_SERVICE_DAY", 10_000_000, 0
        ),
        database_read_url=_database_url(env, "DATABASE_READ_URL"),
        replica_max_lag_s=_float(env, "MONITORING_REPLICA_MAX_LAG_S", 30.0),
        api_processes=_int(env, "MONITORING_API_PROCESSES", 2),
    )
