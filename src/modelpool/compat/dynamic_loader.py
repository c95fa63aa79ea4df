"""Seed 004's ``DynamicModelLoader`` (Aphrodite's dynamic model serving), as a facade.

It builds a pool of its own, with ``max_models`` as the pool's model cap,
``memory_limit_gb`` as the device's budget and ``eviction_policy`` as its strategy,
and runs it on a loop thread of its own: its coroutines may be awaited from any
thread's event loop at once (the seed's "thread-safe operations"), and each is carried
out on the pool's loop, the one owner of its state.

A model's ``config`` is translated to a ``ModelSpec``: a ``ModelSpec``, a mapping of its
fields, or a ``ModelConfig`` (the seed's Aphrodite config: a model path and a dtype,
loaded by the pool's ``torch`` backend).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpool.compat._bridge import PoolThread, gib
from modelpool.config import ModelSpec
from modelpool.core.pool import ModelPool
from modelpool.errors import ModelPoolError
from modelpool.types import DeviceId

log = logging.getLogger("modelpool.compat")


@dataclass(frozen=True)
class ModelConfig:
    """The seed's ``ModelConfig(model=..., tokenizer_mode=..., dtype=...)``: ``model`` is
    a sentence-transformers/transformers folder or a .safetensors file for the ``torch``
    backend; ``tokenizer_mode`` is accepted and has no effect here; ``options`` go to the
    model's spec as they are (``memory``, ``tags``, backend options)."""

    model: str
    tokenizer_mode: str = "auto"
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def spec_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"backend": "torch", "path": self.model}
        if self.dtype is not None:
            fields["dtype"] = self.dtype
        return {**fields, **self.options}


ModelConfigLike = ModelSpec | Mapping[str, Any] | ModelConfig


class DynamicModelLoader:
    """Load, switch to and unload models by name, within a model cap and a memory limit.

    ``device``: where the models go (the budget is booked there); ``backends``: backend
    instances by name for the pool, as ``ModelPool`` takes them.
    """

    def __init__(
        self,
        max_models: int = 5,
        memory_limit_gb: float = 16.0,
        eviction_policy: str = "lru",
        *,
        device: DeviceId = "cpu",
        **pool_options: Any,
    ) -> None:
        self.device = device
        self.pool = ModelPool(
            budgets={device: gib(memory_limit_gb)},
            strategy=eviction_policy,
            max_models=max_models,
            **pool_options,
        )
        self._thread = PoolThread(self.pool)
        self.active_model: str | None = None

    @property
    def max_models(self) -> int | None:
        return self.pool.settings.max_models

    async def load_model(self, name: str, config: ModelConfigLike | None = None) -> bool:
        """Load ``name`` (added with ``config`` the first time), evicting by the policy
        when the cap or the memory limit says so; False, with a log line, on failure."""
        try:
            spec = self._spec(name, config) if config is not None else None
            await self._thread.run(self._load(name, spec))
        except (ModelPoolError, ValueError) as error:
            log.warning("load_model(%s) failed: %s", name, error)
            return False
        return True

    async def switch_active_model(self, name: str) -> bool:
        """Make ``name`` the active model, loading it if it is not resident."""
        if not await self.load_model(name):
            return False
        self.active_model = name
        return True

    async def unload_model(self, name: str) -> bool:
        """Unload ``name`` (after its in-flight uses) and forget it; False if unknown."""
        try:
            await self._thread.run(self._unload(name))
        except ModelPoolError as error:
            log.warning("unload_model(%s) failed: %s", name, error)
            return False
        if self.active_model == name:
            self.active_model = None
        return True

    def get_loaded_models(self) -> list[str]:
        """The models resident now."""
        loaded: list[str] = self.pool.get_resource_status()["loaded_models"]
        return loaded

    def close(self) -> None:
        """Unload everything and end the pool's thread."""
        self._thread.close()

    # --- on the pool's loop ---------------------------------------------------------

    async def _load(self, name: str, spec: ModelSpec | None) -> None:
        if spec is not None and name not in self.pool.specs:
            self.pool.add_model(spec)
        elif spec is not None and self.pool.spec(name) != spec:
            raise ValueError(f"{name!r} is already loaded with another config; unload it first")
        await self.pool.load(name)

    async def _unload(self, name: str) -> None:
        await self.pool.unload(name)
        self.pool.remove_model(name)

    def _spec(self, name: str, config: ModelConfigLike) -> ModelSpec:
        if isinstance(config, ModelSpec):
            return config.model_copy(update={"id": name}) if config.id != name else config
        fields = config.spec_fields() if isinstance(config, ModelConfig) else dict(config)
        return ModelSpec.model_validate({"device": self.device, **fields, "id": name})
