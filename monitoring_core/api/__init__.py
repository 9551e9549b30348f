"""The HTTP API: a thin FastAPI layer over monitoring_core (routes, keys and status codes: docs/API.md)."""
