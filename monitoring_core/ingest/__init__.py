"""Ingest: validate items, then write them with binary COPY inside the caller's transaction."""
