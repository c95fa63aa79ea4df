"""Configuration: ``ModelSpec`` and ``Config``, validated by pydantic, from YAML and env.

``schema`` holds the models, ``versions`` a model's versions and health thresholds,
``fields`` the reusable field types (sizes, durations, ids, devices), ``env`` the
``MODELPOOL_*`` overrides, ``alerts`` where health alerts are sent, ``issues`` the
translation of validation errors into ``ConfigIssue``s that name the file, the key path
and the line.
"""

from modelpool.config.alerts import AlertSettings, WebhookSettings
from modelpool.config.schema import (
    AUTO_STARTS_FROM,
    AUTO_STRATEGY,
    DEFAULT_STATE_DIR,
    AutoOptions,
    Config,
    HealthSettings,
    ModelSpec,
    PoolSettings,
    ServerSettings,
    default_state_dir,
    record_specs,
    version_spec,
)
from modelpool.config.versions import (
    ThresholdSettings,
    VersionSpec,
    merged_thresholds,
)

__all__ = [
    "AUTO_STARTS_FROM",
    "AUTO_STRATEGY",
    "AlertSettings",
    "AutoOptions",
    "DEFAULT_STATE_DIR",
    "Config",
    "HealthSettings",
    "ModelSpec",
    "PoolSettings",
    "ServerSettings",
    "ThresholdSettings",
    "VersionSpec",
    "WebhookSettings",
    "default_state_dir",
    "merged_thresholds",
    "record_specs",
    "version_spec",
]
