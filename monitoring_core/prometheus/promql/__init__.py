"""PromQL over the metric store: `promql-parser` parses, `engine` evaluates (see its docstring)."""
