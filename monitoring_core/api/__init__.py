"""The HTTP API: a thin FastAPI layer over monitoring_core (see CONTRACT §4)."""
