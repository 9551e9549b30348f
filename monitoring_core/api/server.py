"""`python -m monitoring_core api`: build the engine, make today's partitions, run uvicorn."""

from __future__ import annotations

import gc
import logging
import socket
from datetime import UTC, datetime, timedelta

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from monitoring_core.api.app import DB_UNAVAILABLE_ERRORS, create_app
from monitoring_core.config import Settings, load_settings
from monitoring_core.db import engine_from_settings
from monitoring_core.partitions import ensure_partitions

__all__ = ["app_factory", "listen_sockets", "serve"]

log = logging.getLogger(__name__)

GC_FIRST_THRESHOLD = 20_000  # Python's default is 700 (later generations keep 10, 10)


def _prepare(settings: Settings) -> FastAPI:
    engine = engine_from_settings(settings)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            ensure_partitions(conn, start=now - timedelta(days=1), end=now + timedelta(days=3))
    except DB_UNAVAILABLE_ERRORS as exc:
        # Start anyway: requests answer 503 until the database is back.
        log.warning("database unavailable at startup (%s); serving 503 until it answers", exc)
    app = create_app(settings, engine)
    # Move everything built so far (pandas, SQLAlchemy, the app) out of the cyclic collector's
    # reach: parsing a batch allocates thousands of dicts, and every full collection would
    # otherwise rescan this heap. Measured: parse + validate 3.8 -> 2.6 µs a point.
    gc.freeze()
    # A batch in flight keeps thousands of short-lived dicts alive at once (32 Sentry events
    # being stored: ~3,000; 500 own-API errors or 5,000 metric points: ~10,000-15,000); with
    # the default first threshold (700) each batch set off several collections that traversed
    # them and promoted them to older generations, which then had full collections. Measured
    # with the envelope benchmark, one worker, 3 runs each way: 27-32 µs of collector time per
    # request (10-13 full collections per 11-14 k requests) -> none; 685-721 vs 727-787 µs of
    # API CPU per request. Acyclic garbage is still freed at once by reference counting; only
    # cycles wait longer (at most ~20,000 new objects' worth).
    gc.set_threshold(GC_FIRST_THRESHOLD, 10, 10)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory monitoring_core.api.server:app_factory` (one app per worker)."""
    return _prepare(load_settings())


def listen_sockets(host: str, ports: list[int]) -> list[socket.socket]:
    """Bound sockets on `host` for each port (as uvicorn binds its own: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _serve_ports(settings: Settings, host: str, ports: list[int], workers: int) -> None:
    """The API on several ports at once: the API port and the OTLP port (MONITORING_OTLP_PORT)."""
    sockets = listen_sockets(host, ports)
    log.info("API listening on %s ports %s", host, ", ".join(map(str, ports)))
    if workers > 1:
        config = uvicorn.Config(
            "monitoring_core.api.server:app_factory",
            factory=True,
            host=host,
            port=ports[0],
            workers=workers,
            access_log=False,
        )
        Multiprocess(config, sockets=sockets).run()
        return
    config = uvicorn.Config(_prepare(settings), host=host, port=ports[0], access_log=False)
    uvicorn.Server(config).run(sockets=sockets)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the API until interrupted; several workers are separate processes (import string)."""
    if settings.otlp_port and settings.otlp_port != port:
        _serve_ports(settings, host, [port, settings.otlp_port], workers)
        return
    if workers > 1:
        uvicorn.run(
            "monitoring_core.api.server:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
        )
        return
    uvicorn.run(_prepare(settings), host=host, port=port, access_log=False)
