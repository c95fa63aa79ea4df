"""The versions of each model, and how its traffic is split between them.

A model with one version is not routed at all: requests for it go straight to its
record. A model with several has an entry for each of its names (id and aliases) in
``routes``, and a split (``weights``) that starts with everything on its base version.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpool.config import ModelSpec, version_spec
from modelpool.core.pool import ModelPool
from modelpool.errors import ModelPoolError, SwitchRefused, UnknownVersion
from modelpool.plugins import PLUGINS
from modelpool.rollout.routing import Weights, choose

log = logging.getLogger("modelpool.rollout")


@dataclass
class VersionInfo:
    """One version of a model: its pool record and who made it, when, and why."""

    model: str
    version: str
    record: str
    origin: str  # "config" or "runtime"
    author: str | None = None
    notes: str | None = None
    created: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """What was registered at run time (to register it again after a restart)."""

    def saved(self) -> dict[str, Any]:
        """What the state file keeps of a version registered at run time."""
        return {
            "settings": self.settings,
            "author": self.author,
            "notes": self.notes,
            "created": self.created,
        }


class VersionRegistry:
    """Every model's versions and split. Owned by the ``RolloutManager``."""

    def __init__(self, pool: ModelPool, rng: random.Random) -> None:
        self._pool, self._rng = pool, rng
        self.versions: dict[str, dict[str, VersionInfo]] = {}
        self._weights: dict[str, Weights] = {}
        self._routes: dict[str, str] = {}  # every name of a model with versions -> model
        for model_id, spec in pool.specs.items():
            if "@" not in model_id:
                self._read_config(model_id, spec)

    def _read_config(self, base: str, spec: ModelSpec) -> None:
        entries = {spec.version: spec.versions.get(spec.version), **spec.versions}
        self.versions[base] = {
            name: VersionInfo(
                base,
                name,
                base if name == spec.version else f"{base}@{name}",
                "config",
                getattr(entry, "author", None),
                getattr(entry, "notes", None),
                getattr(entry, "created", None),
            )
            for name, entry in entries.items()
        }
        self._reroute(base)

    # --- lookups ------------------------------------------------------------------------

    def base(self, model: str) -> str:
        """The base id of the model ``model`` names (an id, alias or ``id@version``)."""
        return self._pool.spec(model).base_id

    def info(self, base: str, version: str) -> VersionInfo:
        info = self.versions[base].get(version)
        if info is None:
            raise UnknownVersion(base, version, list(self.versions[base]))
        return info

    def weights(self, base: str) -> Weights:
        if base in self._weights:
            return self._weights[base]
        return ((self._pool.spec(base).version, 1.0),)

    def serving(self, base: str) -> str:
        """The version with the largest share (the one all traffic is on between rollouts)."""
        return max(self.weights(base), key=lambda pair: pair[1])[0]

    def with_versions(self) -> list[str]:
        return [base for base, versions in self.versions.items() if len(versions) > 1]

    def route(self, name: str, key: str | None) -> str:
        model = self._routes.get(name)
        if model is None:
            return name
        return f"{model}@{choose(model, self._weights[model], key, self._rng)}"

    def listing(self, base: str, busy: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every version of ``base`` with its metadata, state and share of traffic;
        ``busy``: the versions a running rollout uses."""
        weights = dict(self.weights(base))
        return [
            {
                "version": info.version,
                "id": info.record,
                "name": f"{base}@{info.version}",
                "origin": info.origin,
                "author": info.author,
                "notes": info.notes,
                "created": info.created,
                "state": str(self._pool.state(info.record)),
                "weight": weights.get(info.version, 0.0),
                "in_rollout": info.version in busy,
            }
            for info in self.versions[base].values()
        ]

    # --- changes ------------------------------------------------------------------------

    def set_weights(self, base: str, weights: Weights) -> None:
        self._weights[base] = weights

    def add(self, info: VersionInfo, spec: ModelSpec) -> None:
        """Make ``spec`` a model of the pool and ``info`` one of its model's versions."""
        self._pool.add_model(spec)
        self.versions[info.model][info.version] = info
        self._reroute(info.model)

    def register(
        self,
        base: str,
        version: str,
        settings: Mapping[str, Any],
        *,
        author: str | None,
        notes: str | None,
        created: str,
    ) -> VersionInfo:
        """Add ``version`` of ``base`` at run time: its settings with ``settings`` over
        them. ``SwitchRefused`` if the name is taken; ``ConfigError`` names a bad key."""
        if version in self.versions[base]:
            raise SwitchRefused(base, [f"version {version!r} is already registered"])
        entry = {**settings, "author": author, "notes": notes}
        spec = version_spec(self._pool.spec(base), version, entry, plugins=PLUGINS)
        info = VersionInfo(
            base, version, spec.id, "runtime", author, notes, created, dict(settings)
        )
        self.add(info, spec)
        return info

    def track(self, spec: ModelSpec) -> None:
        """A model the pool gained at run time (a config reload): its config's version."""
        self._read_config(spec.id, spec)

    def forget(self, base: str) -> None:
        """A model the pool lost at run time (a config reload): its versions and split."""
        self.versions.pop(base, None)
        self._weights.pop(base, None)
        for name in [n for n, model in self._routes.items() if model == base]:
            del self._routes[name]

    def runtime_versions(self, base: str) -> list[str]:
        """The versions of ``base`` registered at run time (not in the config)."""
        versions = self.versions.get(base, {})
        return [name for name, info in versions.items() if info.origin == "runtime"]

    def remove(self, base: str, version: str) -> None:
        """Forget a version whose record holds nothing any more."""
        self._pool.remove_model(self.versions[base][version].record)
        del self.versions[base][version]
        self._reroute(base)

    def _reroute(self, base: str) -> None:
        names = self._pool.spec(base).names
        for name in names:
            self._routes.pop(name, None)
        if len(self.versions[base]) > 1:
            self._weights.setdefault(base, ((self._pool.spec(base).version, 1.0),))
            for name in names:
                self._routes[name] = base
        else:
            self._weights.pop(base, None)

    # --- the state file -----------------------------------------------------------------

    def saved(self) -> dict[str, Any]:
        """What the state file keeps: run-time versions and each model's split."""
        models: dict[str, Any] = {}
        for base, versions in self.versions.items():
            runtime = {n: i.saved() for n, i in versions.items() if i.origin == "runtime"}
            if runtime or base in self._weights:
                models[base] = {"versions": runtime, "weights": self._weights.get(base)}
        return models

    def restore(self, models: Mapping[str, Any], source: str) -> None:
        """Register again what ``saved`` wrote; what no longer fits is logged and left."""
        for base, entry in models.items():
            if base not in self.versions:
                log.warning("%s: model %r is not configured any more; ignored", source, base)
                continue
            for name, saved in entry.get("versions", {}).items():
                self._restore_version(base, name, saved, source)
            weights = entry.get("weights")
            if weights:
                pairs = tuple((str(v), float(s)) for v, s in weights)
                if all(v in self.versions[base] for v, _ in pairs):
                    self._weights[base] = pairs
                else:
                    log.warning("%s: %s's split names a version it lacks; reset", source, base)

    def _restore_version(self, base: str, name: str, saved: Mapping[str, Any], source: str) -> None:
        if name in self.versions[base]:
            log.warning("%s: %s@%s is now in the config; the config wins", source, base, name)
            return
        settings = dict(saved.get("settings") or {})
        try:
            spec = version_spec(
                self._pool.spec(base), name, settings, source=source, plugins=PLUGINS
            )
            info = VersionInfo(
                base, name, spec.id, "runtime", saved.get("author"), saved.get("notes"),
                saved.get("created"), settings,
            )  # fmt: skip
            self.add(info, spec)
        except (ModelPoolError, ValueError) as error:
            log.warning(
                "%s: version %s@%s cannot be registered again: %s", source, base, name, error
            )
