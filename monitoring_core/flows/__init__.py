"""Flows: the stories that cross domains (alert cycle, alert actions and escalation,
notification delivery with its self-alert, error ingest). Domains never import a flow;
flows import domains. See docs/ARCHITECTURE.md.
"""
