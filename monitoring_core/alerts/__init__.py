"""Alerting: rule parsing (`rules`), the pure state machine (`engine`), SQL (`store`, `writes`,
`raw`), series for a cycle (`series`), silences, backtests, read queries (`queries`) and the
admin actions (`service`). The evaluation cycle and the alert actions live in
monitoring_core/flows; escalation policies in monitoring_core/policies."""
