"""Configuration: ``ModelSpec`` and ``Config``, validated by pydantic, from YAML and env.

``schema`` holds the models and the loader, ``settings`` the server, pool, health
and cluster sections, ``versions`` a model's versions and health thresholds, ``checks`` what both
need to check plug-ins,
``fields`` the reusable field types (sizes, durations, ids, devices), ``env`` the
``MODELPOOL_*`` overrides, ``alerts`` where health alerts are sent, ``issues`` the
translation of validation errors into ``ConfigIssue``s that name the file, the key path
and the line.
"""

from modelpool.config.alerts import AlertSettings, WebhookSettings
from modelpool.config.schema import Config, ModelSpec, record_specs, version_spec
from modelpool.config.settings import (
    AUTO_STARTS_FROM,
    AUTO_STRATEGY,
    DEFAULT_STATE_DIR,
    AutoOptions,
    ClusterSettings,
    HealthSettings,
    PoolSettings,
    ServerSettings,
    default_state_dir,
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
    "ClusterSettings",
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
