"""Error tracking: scrub, fingerprint, classify, store, correlate and recover error events.

Pure modules: `scrub`, `fingerprint`, `severity`, `envelope`, `validate`, `correlation`'s
decisions, `recovery.quiet_groups`. I/O: `store`, `ingest`, `queries`, `recovery.run`.
"""
