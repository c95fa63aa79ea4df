"""The seeds' own APIs as thin facades over the pool: code written against one of the
seed documents runs on modelpool with its import lines changed.

* seed 000 (model switching strategy): ``ResourceManager``, ``ModelLoader``,
  ``GPUMonitor``, ``ModelResourceInfo``, ``ModelStatus``, ``ModelSwitchingStrategy``;

Each translates and delegates; every decision is the pool's (see docs/compat.md).
"""

from __future__ import annotations

from modelpool.compat.resource_manager import (
    GPUMonitor,
    ModelLoader,
    ModelResourceInfo,
    ModelStatus,
    ResourceManager,
)
from modelpool.types import ModelSwitchingStrategy

__all__ = [
    "GPUMonitor",
    "ModelLoader",
    "ModelResourceInfo",
    "ModelStatus",
    "ModelSwitchingStrategy",
    "ResourceManager",
]
