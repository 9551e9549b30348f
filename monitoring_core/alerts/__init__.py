"""Alerting: rule parsing (rules), the pure state machine (engine), SQL (store), silences,
escalation policies, and the evaluation cycle (evaluation)."""
