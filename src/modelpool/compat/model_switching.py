"""Seed 003's real-time model switching API (vLLM-Omni's ``DynamicModelRegistry`` and
``ModelSwitcher``) as facades over the ``RolloutManager``.

A model's versions are the pool's (``model@version`` records); switching is a rollout.
``register_model(config, version, metadata)`` adds a version of a model the pool knows:
``config`` names the model and carries the version's settings (see
``registration``). Run on the loop the rollout manager runs on, as its methods are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelpool.config import ModelSpec
from modelpool.core.pool import ModelPool
from modelpool.rollout import RolloutManager
from modelpool.rollout.manager import SwitchResult
from modelpool.rollout.strategies import Strategy

SEED_STRATEGIES = {"ab_test": Strategy.AB}
"""The seed's strategy names that differ from the rollout manager's."""
SPEC_ONLY = frozenset({"id", "version", "versions", "aliases"})
"""A spec's fields that name the model rather than set a version's settings."""


class SwitchingStrategyType(StrEnum):
    """The seed's strategy names (``AB_TEST`` is the rollout manager's ``ab``)."""

    IMMEDIATE = "immediate"
    GRADUAL = "gradual"
    AB_TEST = "ab_test"
    CANARY = "canary"


def strategy_name(strategy: str | StrEnum) -> str:
    """The rollout manager's name for a strategy the seed names."""
    return str(SEED_STRATEGIES.get(str(strategy), strategy))


@dataclass(frozen=True)
class Registration:
    """What registering a version means here: ``register_version``'s arguments."""

    model: str
    version: str
    settings: dict[str, Any]
    author: str | None
    notes: str | None


def registration(config: Any, version: str, metadata: Mapping[str, Any] | None) -> Registration:
    """Translate the seed's ``register_model(config, version, metadata)``.

    ``config``: a ``ModelSpec`` of the model (its fields other than id, version and
    aliases are the version's settings); or a mapping with ``model_id`` (or ``id``),
    or the seed's ``model_arch`` and ``model_stage`` (the model is
    ``{model_arch}_{model_stage}``, as the seed names it), and the version's settings
    beside them. ``metadata``: ``author`` and ``notes``; other keys join the notes.
    """
    if isinstance(config, ModelSpec):
        model = config.base_id
        settings = config.model_dump(exclude_unset=True, exclude=set(SPEC_ONLY))
    elif isinstance(config, Mapping):
        settings = dict(config)
        model = settings.pop("model_id", None) or settings.pop("id", None)
        if model is None and "model_arch" in settings and "model_stage" in settings:
            model = f"{settings.pop('model_arch')}_{settings.pop('model_stage')}"
        if not isinstance(model, str) or not model:
            raise ValueError(
                "register_model: config names no model: give model_id (or id), or the "
                "seed's model_arch and model_stage"
            )
    else:
        raise TypeError(
            f"register_model: config must be a ModelSpec or a mapping, not {type(config).__name__}"
        )
    meta = dict(metadata or {})
    author = meta.pop("author", None)
    notes = [str(meta.pop("notes"))] if "notes" in meta else []
    notes += [f"{key}: {value}" for key, value in meta.items()]
    return Registration(
        model, version, settings, None if author is None else str(author), "; ".join(notes) or None
    )


class DynamicModelRegistry:
    """The seed's registry: versions of the pool's models."""

    def __init__(self, rollouts: RolloutManager) -> None:
        self.rollouts = rollouts

    def register_model(
        self, config: Any, version: str, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Add ``version`` of the model ``config`` names; returns the model's id. A
        version the config file declares (the model's base among them) is registered
        already: naming it returns the id and changes nothing."""
        entry = registration(config, version, metadata)
        model = str(self.rollouts.describe(entry.model)["model"])  # an alias: the id
        declared = {v["version"] for v in self.rollouts.versions(model) if v["origin"] != "runtime"}
        if version not in declared:
            self.rollouts.register_version(
                model, version, entry.settings, author=entry.author, notes=entry.notes
            )
        return model

    def list_versions(self, model_id: str) -> list[dict[str, Any]]:
        return self.rollouts.versions(model_id)


class ModelSwitcher:
    """The seed's switcher: a rollout per switch. ``cache`` and ``transition_manager``
    are accepted for the seed's signature; the pool and the rollout manager are both."""

    def __init__(
        self,
        registry: DynamicModelRegistry,
        cache: object | None = None,
        transition_manager: object | None = None,
    ) -> None:
        self.rollouts = registry.rollouts

    async def switch_model(
        self,
        model_id: str,
        target_version: str,
        strategy_type: str | StrEnum = SwitchingStrategyType.IMMEDIATE,
        strategy_config: Mapping[str, Any] | None = None,
    ) -> SwitchResult:
        return await self.rollouts.switch_model(
            model_id, target_version, strategy_name(strategy_type), strategy_config
        )

    def get_switch_status(self, operation_id: str) -> dict[str, Any]:
        """Status, ``progress`` (0..1), steps and history of one switch."""
        return self.rollouts.get_switch_status(operation_id)

    def validate_switch_request(
        self,
        model_id: str,
        target_version: str,
        strategy_type: str | StrEnum = SwitchingStrategyType.IMMEDIATE,
        strategy_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{"valid": bool, "errors": [...]}`` with every problem found."""
        return self.rollouts.validate_switch_request(
            model_id, target_version, strategy_name(strategy_type), strategy_config
        )


class ModelCache:
    """The seed's model cache: the pool's preloads."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    async def preload_model(self, model_key: str, priority: int = 5) -> bool:
        """Load ``model_key`` (an id or ``model@version``) when the pool is quiet."""
        return await self.pool.preload(model_key, priority)
