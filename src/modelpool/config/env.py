"""``MODELPOOL_*`` environment overrides, applied to a raw config mapping.

``MODELPOOL_API_KEYS=a,b`` sets ``server.api_keys`` (``MODELPOOL_ADMIN_KEYS``:
``server.admin_keys``); every other variable names a key
path with ``__`` between segments (``MODELPOOL_POOL__BUDGETS__CUDA_0=15GB``). Values
are read as YAML, so ``true``, ``60`` and ``[a, b]`` mean what they would in the file.
Overrides run before validation, so a bad value is reported like one in the file,
except that the issue names the variable instead of a file and line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from modelpool.config.issues import Loc, did_you_mean, dotted
from modelpool.errors import ConfigIssue

PREFIX = "MODELPOOL_"
API_KEYS_VAR = "MODELPOOL_API_KEYS"
ADMIN_KEYS_VAR = "MODELPOOL_ADMIN_KEYS"
KEY_LISTS: dict[str, tuple[str, str]] = {
    API_KEYS_VAR: ("server", "api_keys"),
    ADMIN_KEYS_VAR: ("server", "admin_keys"),
}
"""Variables that hold comma-separated keys, not YAML (a key may contain any character)."""
RESERVED = frozenset({"MODELPOOL_CONFIG"})
"""Variables with the prefix that are not settings (the CLI reads the file name)."""
SECTIONS = ("server", "pool", "health", "models")


@dataclass(frozen=True, slots=True)
class Override:
    """One variable that set the value at ``loc`` (or created the mapping there)."""

    var: str
    loc: Loc


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[list[Override], list[ConfigIssue]]:
    """Set every ``MODELPOOL_*`` value in ``data``; nested mappings are copied, not mutated.

    Returns what was overridden (so that later issues can name the variable) and the
    problems with the variables themselves.
    """
    overrides: list[Override] = []
    issues: list[ConfigIssue] = []
    for var in sorted(environ):
        if not var.startswith(PREFIX) or var in RESERVED:
            continue
        if var in KEY_LISTS:
            loc: Loc = KEY_LISTS[var]
            value: Any = [key.strip() for key in environ[var].split(",") if key.strip()]
        else:
            resolved = _resolve(var, data)
            if isinstance(resolved, ConfigIssue):
                issues.append(resolved)
                continue
            loc, value = resolved, _parse_value(environ[var])
        outcome = _set(data, loc, value)
        if isinstance(outcome, str):
            issues.append(ConfigIssue(var, dotted(loc), outcome))
        else:
            overrides.append(Override(var, outcome))
    return overrides, issues


def override_for(loc: Loc, overrides: list[Override]) -> str | None:
    """The variable that set ``loc`` or one of its parents, if any (the last one wins)."""
    found = None
    for override in overrides:
        if loc[: len(override.loc)] == override.loc:
            found = override.var
    return found


def _resolve(var: str, data: Mapping[str, Any]) -> Loc | ConfigIssue:
    segments = var[len(PREFIX) :].split("__")
    guess = dotted(tuple(segment.lower() for segment in segments))
    if not all(segments):
        return ConfigIssue(var, guess, "malformed name: segments are separated by '__'")
    section = segments[0].lower()
    if section not in SECTIONS:
        hint = did_you_mean(section, SECTIONS)
        expected = ", ".join(f"{PREFIX}{name.upper()}__..." for name in SECTIONS)
        return ConfigIssue(var, guess, f"unknown setting{hint}; expected {expected}")
    rest = [segment.lower() for segment in segments[1:]]
    if section == "models":
        if not rest:
            return ConfigIssue(var, "models", f"name a model: {PREFIX}MODELS__<ID>__<KEY>")
        models = data.get("models")
        known = [str(key) for key in models] if isinstance(models, Mapping) else []
        matches = [key for key in known if _normalized(key) == _normalized(segments[1])]
        if len(matches) != 1:
            problem = "no configured model" if not matches else "more than one model"
            listed = ", ".join(matches or sorted(known)) or "none"
            message = f"{problem} matches {segments[1]!r} (models: {listed})"
            return ConfigIssue(var, guess, message)
        rest[0] = matches[0]
    elif section == "pool" and len(rest) >= 2 and rest[0] == "budgets":
        pool = data.get("pool")
        budgets = pool.get("budgets") if isinstance(pool, Mapping) else None
        rest[1] = _device_key(segments[2], budgets if isinstance(budgets, Mapping) else {})
    return (section, *rest)


def _normalized(name: str) -> str:
    # Env var names cannot hold '-', '.' or ':', so ids and devices are compared with
    # those folded to '_' and case ignored.
    return re.sub(r"[-.:]", "_", name).lower()


def _device_key(segment: str, budgets: Mapping[Any, Any]) -> str:
    for key in budgets:
        if isinstance(key, str) and _normalized(key) == _normalized(segment):
            return key
    name = segment.lower()
    indexed = re.fullmatch(r"([a-z]+)_(\d+)", name)
    return f"{indexed[1]}:{indexed[2]}" if indexed else name


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        # Not YAML (e.g. a key starting with '@'): the raw string is what was meant.
        return text


def _set(data: dict[str, Any], loc: Loc, value: Any) -> Loc | str:
    """Set ``value`` at ``loc``; return what the variable now accounts for, or a problem.

    That is ``loc`` itself, or the first parent the variable had to create: a mistake
    anywhere under a section that only the environment supplied is the variable's.
    """
    node = data
    created: Loc | None = None
    for depth, part in enumerate(loc[:-1]):
        child = node.get(str(part))
        if child is None:
            child = {}
            created = created or loc[: depth + 1]
        elif isinstance(child, BaseModel):
            child = child.model_dump()
        elif isinstance(child, Mapping):
            child = dict(child)
        else:
            return f"cannot set it: {dotted(loc[: depth + 1])} is not a mapping"
        node[str(part)] = child
        node = child
    node[str(loc[-1])] = value
    return created or loc
