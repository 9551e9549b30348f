"""Escalation policies: one store, one choice of policy (`policy_for`), pure step timing."""
