"""Error tracking: scrub, fingerprint, classify, store, correlate and recover error events.

Pure modules: `scrub`, `fingerprint`, `severity`, `rules`, `envelope`, `sentry`, `validate`,
and `correlation`'s burst decisions. I/O: `store`, `queries`, `recovery`, `service` (group
actions). Ingest itself is a flow (monitoring_core/flows/error_ingest.py).
"""
