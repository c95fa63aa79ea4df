"""The seeds' own APIs as thin facades over the pool: code written against one of the
seed documents runs on modelpool with its import lines changed.

* seed 000 (model switching strategy): ``ResourceManager``, ``ModelLoader``,
  ``GPUMonitor``, ``ModelResourceInfo``, ``ModelStatus``, ``ModelSwitchingStrategy``;
* seed 004 (dynamic model serving): ``DynamicModelLoader``, ``ModelConfig``;

Each translates and delegates; every decision is the pool's (see docs/compat.md).
"""

from __future__ import annotations

from modelpool.compat.dynamic_loader import DynamicModelLoader, ModelConfig
from modelpool.compat.resource_manager import (
    GPUMonitor,
    ModelLoader,
    ModelResourceInfo,
    ModelStatus,
    ResourceManager,
)
from modelpool.types import ModelSwitchingStrategy

__all__ = [
    "DynamicModelLoader",
    "ModelConfig",
    "GPUMonitor",
    "ModelLoader",
    "ModelResourceInfo",
    "ModelStatus",
    "ModelSwitchingStrategy",
    "ResourceManager",
]
