"""The seeds' own APIs as thin facades over the pool: code written against one of the
seed documents runs on modelpool with its import lines changed.

* seed 000 (model switching strategy): ``ResourceManager``, ``ModelLoader``,
  ``GPUMonitor``, ``ModelResourceInfo``, ``ModelStatus``, ``ModelSwitchingStrategy``;
* seed 002 (model management): ``VRAMMonitor``, ``ServiceController``,
  ``ModelManager`` (and ``set_default_pool``: the pool they share);
* seed 003 (real-time model switching): ``DynamicModelRegistry``, ``ModelSwitcher``,
  ``ModelCache``, ``SwitchingStrategyType`` (its REST paths: ``http/seed_routes.py``);
* seed 004 (dynamic model serving): ``DynamicModelLoader``, ``ModelConfig``;

Each translates and delegates; every decision is the pool's (see docs/compat.md).
"""

from __future__ import annotations

from modelpool.compat.dynamic_loader import DynamicModelLoader, ModelConfig
from modelpool.compat.model_management import (
    InsufficientVRAM,
    LLMStatus,
    ModelEstimate,
    ModelManager,
    ServiceController,
    VRAMMonitor,
    VRAMSnapshot,
    set_default_pool,
)
from modelpool.compat.model_switching import (
    DynamicModelRegistry,
    ModelCache,
    ModelSwitcher,
    SwitchingStrategyType,
)
from modelpool.compat.resource_manager import (
    GPUMonitor,
    ModelLoader,
    ModelResourceInfo,
    ModelStatus,
    ResourceManager,
)
from modelpool.types import ModelSwitchingStrategy

__all__ = [
    "DynamicModelRegistry",
    "ModelCache",
    "ModelSwitcher",
    "SwitchingStrategyType",
    "DynamicModelLoader",
    "ModelConfig",
    "InsufficientVRAM",
    "LLMStatus",
    "ModelEstimate",
    "ModelManager",
    "ServiceController",
    "VRAMMonitor",
    "VRAMSnapshot",
    "set_default_pool",
    "GPUMonitor",
    "ModelLoader",
    "ModelResourceInfo",
    "ModelStatus",
    "ModelSwitchingStrategy",
    "ResourceManager",
]
