"""What a config reload changes: the pure comparison of the running config with a new one.

``diff_configs(running, new)`` sorts every difference into what the pool can apply while
it serves and what only a restart can::

    added        models to make loadable
    removed      models to drain, unload and forget
    reloaded     models whose new settings need a fresh load (backend, its options,
                 memory, device...): unloaded once their leases are back, loaded again
    updated      models whose new settings are metadata (tags, aliases, priority, ttl,
                 defaults...): applied in place, the model keeps serving
    settings     pool settings applied live (budgets, strategy, watermarks, caps...)
    needs_restart  dotted keys whose change waits for a restart (server.port,
                 pool.probe, a model with versions...): left as they run

and ``running``: the config the pool runs once the diff is applied (the new one, with
the keys that need a restart still at their running values), which the next reload is
compared with, so a change that waits for a restart is reported again until then.

A setting not known here to be metadata needs a reload: a field added to ``ModelSpec``
later is safe before anyone classifies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpool.config.schema import Config, ModelSpec
from modelpool.config.settings import AUTO_STRATEGY, PoolSettings
from modelpool.types import ModelId

METADATA_FIELDS = frozenset(
    {"priority", "pinned", "ttl", "tags", "aliases", "defaults", "thresholds", "preload",
     "endpoints", "fallback"}
)  # fmt: skip
"""Model settings applied without unloading: how the model is found, ranked, kept and
asked, never what is loaded."""
LIVE_POOL_SETTINGS = frozenset(
    {"strategy", "strategy_options", "budgets", "high_watermark", "low_watermark",
     "max_models", "device_max_models", "placement", "reap_interval", "starvation_limit",
     "wait_timeout"}
)  # fmt: skip
"""Pool settings the running pool reads as it goes (or takes through a handler)."""
RESTART_SECTIONS = ("server", "health", "alerts", "cluster")
"""Sections read once at start: the listening socket, TLS, keys, health windows, webhooks,
the Ray deployment."""


@dataclass(frozen=True)
class ModelChange:
    """A model present before and after, with the settings that differ."""

    old: ModelSpec
    spec: ModelSpec
    """The new spec."""
    fields: tuple[str, ...]

    @property
    def model_id(self) -> ModelId:
        return self.spec.id

    @property
    def metadata_now(self) -> ModelSpec:
        """The running spec with the new metadata: what applies at once while the rest
        waits for the model to unload."""
        update = {name: getattr(self.spec, name) for name in METADATA_FIELDS}
        return self.old.model_copy(update=update)


@dataclass(frozen=True)
class ConfigDiff:
    """Everything a reload changes, sorted by how it is applied (see the module)."""

    running: Config
    added: tuple[ModelSpec, ...] = ()
    removed: tuple[ModelId, ...] = ()
    reloaded: tuple[ModelChange, ...] = ()
    updated: tuple[ModelChange, ...] = ()
    settings: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    """Pool settings applied live: name -> (old, new)."""
    needs_restart: tuple[str, ...] = ()

    @property
    def pool_settings(self) -> PoolSettings:
        """The pool settings in force once the diff is applied."""
        return self.running.pool

    @property
    def empty(self) -> bool:
        """Nothing to apply (there may still be keys that need a restart)."""
        return not (self.added or self.removed or self.reloaded or self.updated or self.settings)

    def summary(self) -> dict[str, Any]:
        """The diff as plain data: for the event, the audit line and the HTTP answer."""
        return {
            "added": [spec.id for spec in self.added],
            "removed": list(self.removed),
            "reloaded": {change.model_id: list(change.fields) for change in self.reloaded},
            "updated": {change.model_id: list(change.fields) for change in self.updated},
            "settings": {
                name: {"old": _plain(old), "new": _plain(new)}
                for name, (old, new) in self.settings.items()
            },
            "needs_restart": list(self.needs_restart),
        }


def diff_configs(running: Config, new: Config) -> ConfigDiff:
    """Compare the config the pool runs with a new, validated one (see the module)."""
    restart: list[str] = []
    for section in RESTART_SECTIONS:
        old_part, new_part = getattr(running, section), getattr(new, section)
        restart.extend(f"{section}.{name}" for name in _changed_fields(old_part, new_part))
    pool, settings, pool_restart = _pool_changes(running.pool, new.pool)
    restart.extend(pool_restart)

    added: list[ModelSpec] = []
    removed: list[ModelId] = []
    reloaded: list[ModelChange] = []
    updated: list[ModelChange] = []
    models: dict[ModelId, ModelSpec] = {}
    for model_id, spec in new.models.items():
        old = running.models.get(model_id)
        if old is None:
            if spec.versions:
                restart.append(f"models.{model_id}")  # versions are routed from the start
                continue
            added.append(spec)
        elif old != spec:
            fields = _changed_fields(old, spec)
            # Versions are routed from the start; a model's copies (replicas) are made
            # at the start: changing either is a restart's job, and so is any setting
            # of those copies but their metadata.
            copies_change = (old.replicas or spec.replicas) and not (
                old.replicas == spec.replicas and set(fields) <= METADATA_FIELDS
            )
            if old.versions or spec.versions or copies_change:
                restart.extend(f"models.{model_id}.{name}" for name in fields)
                models[model_id] = old
                continue
            change = ModelChange(old, spec, tuple(fields))
            (updated if set(fields) <= METADATA_FIELDS else reloaded).append(change)
        models[model_id] = spec
    for model_id, old in running.models.items():
        if model_id in new.models:
            continue
        if old.versions:
            restart.append(f"models.{model_id}")
            models[model_id] = old
        else:
            removed.append(model_id)
    kept = {section: getattr(running, section) for section in RESTART_SECTIONS}  # left as they run
    effective = new.model_copy(update={**kept, "pool": pool, "models": models})
    return ConfigDiff(
        effective,
        tuple(added),
        tuple(removed),
        tuple(reloaded),
        tuple(updated),
        settings,
        tuple(restart),
    )


def _pool_changes(
    old: PoolSettings, new: PoolSettings
) -> tuple[PoolSettings, dict[str, tuple[Any, Any]], list[str]]:
    """The pool settings in force after the reload, the live changes, and the keys that
    need a restart."""
    live: dict[str, tuple[Any, Any]] = {}
    restart: list[str] = []
    for name in _changed_fields(old, new):
        before, after = getattr(old, name), getattr(new, name)
        if name == "strategy" and AUTO_STRATEGY in (before, after):
            restart.append("pool.strategy")  # auto's evaluations are set up at start
        elif name == "budgets":
            # A device's budget moves live; a device added or taken away needs a restart.
            devices = set(before) ^ set(after)
            restart.extend(f"pool.budgets.{device}" for device in sorted(devices))
            moved = {d: after[d] for d in before if d in after and after[d] != before[d]}
            if moved:
                live["budgets"] = (dict(before), {**before, **moved})
        elif name in LIVE_POOL_SETTINGS:
            live[name] = (before, after)
        else:
            restart.append(f"pool.{name}")
    if "strategy_options" in live and "pool.strategy" in restart:
        del live["strategy_options"]  # they belong to the strategy that waits
        restart.append("pool.strategy_options")
    values = {name: new_value for name, (_, new_value) in live.items()}
    return old.model_copy(update=values), live, restart


def _changed_fields(old: Any, new: Any) -> list[str]:
    """The fields of two pydantic models of one type whose values differ, in order."""
    return [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]


def _plain(value: Any) -> Any:
    """A setting as JSON data: a path or a model as its plain form."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(key): _plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(inner) for inner in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
