"""Benchmarks: `python bench/<name>.py`, no arguments (see bench/README.md)."""
