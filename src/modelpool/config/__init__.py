"""Configuration: ``ModelSpec`` and ``Config``, validated by pydantic, from YAML and env.

``schema`` holds the models, ``fields`` the reusable field types (sizes, durations,
ids, devices), ``env`` the ``MODELPOOL_*`` overrides, ``issues`` the translation of
validation errors into ``ConfigIssue``s that name the file, the key path and the line.
"""

from modelpool.config.schema import (
    DEFAULT_STATE_DIR,
    Config,
    ModelSpec,
    PoolSettings,
    ServerSettings,
    default_state_dir,
)

__all__ = [
    "DEFAULT_STATE_DIR",
    "Config",
    "ModelSpec",
    "PoolSettings",
    "ServerSettings",
    "default_state_dir",
]
