"""Traces: spans (from OTLP and Sentry transactions), their store and reads."""
