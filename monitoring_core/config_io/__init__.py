"""Configuration as code: `config export` to YAML and `config apply` from it (docs/OPERATIONS.md)."""

from monitoring_core.config_io.apply import Change, apply_config, diff_states, export_config
from monitoring_core.config_io.document import ConfigInvalid, Problem

__all__ = ["Change", "ConfigInvalid", "Problem", "apply_config", "diff_states", "export_config"]
