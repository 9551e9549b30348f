"""The HTTP API: a thin FastAPI layer over monitoring_core (routes, keys, codes: docs/API.md)."""
