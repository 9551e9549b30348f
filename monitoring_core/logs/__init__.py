"""Logs: log records (from OTLP and the JSON batch route), their store and reads."""
