"""What validating a config needs besides the models themselves: the context keys, the
plug-in checks (through the registries handed in) and the problem sink.

Below ``schema`` and ``versions``, which both use it: a version is validated as a model
of its own, so the two would otherwise import each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, ValidationInfo

from modelpool.config.fields import CHECK_FILES
from modelpool.config.issues import Loc, describe, dotted, unknown_key_message
from modelpool.errors import PluginNotFound
from modelpool.plugins import Plugins, Registry

_T = TypeVar("_T")

PLUGINS_KEY = "modelpool.config.plugins"
"""Validation context key: the ``Plugins`` to check backend and strategy options with."""

# Validation context key: when present, problems found after field validation (backend
# options, cross-field checks) are appended to this list with their paths instead of
# being raised as a single error, so that the loader can report each one separately.
SINK = "modelpool.config.sink"


def registered(registry: Registry, name: str) -> str:
    """``name`` if ``registry`` knows it (without importing it), else a ValueError."""
    known = registry.names()
    if name not in known:
        raise ValueError(str(PluginNotFound(registry.kind, name, known)))
    return name


def checks_files(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(CHECK_FILES))


def plugins_of(info: ValidationInfo) -> Plugins | None:
    """The registries this validation was handed (None: check names only)."""
    found = info.context.get(PLUGINS_KEY) if isinstance(info.context, dict) else None
    return found if isinstance(found, Plugins) else None


def option_problems(
    backend: object,
    options: Mapping[str, Any],
    keys: Sequence[str],
    *,
    check_files: bool = False,
    plugins: Plugins | None = None,
) -> list[tuple[Loc, str]]:
    """Check a model's options against its backend's ``options_model``, if it has one.

    ``keys`` are the other keys accepted beside the options, for did-you-mean hints;
    ``check_files``: the files they name must exist.
    Without ``plugins`` nothing is checked: finding the options model imports the
    backend, which only the caller may ask for.
    """
    if plugins is None:
        return []
    if not isinstance(backend, str) or backend not in plugins.backends.names():
        return []  # the backend field reports this
    try:
        factory = plugins.backends.get(backend)
    except ImportError:
        # A backend whose optional dependencies are missing cannot check its options;
        # the config must stay loadable for the other models, so the pool reports it
        # (LoadFailed) if this model is ever used.
        return []
    options_model = getattr(factory, "options_model", None)
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        return []
    try:
        options_model.model_validate(options, context={CHECK_FILES: check_files})
    except ValidationError as error:
        accepted = [*keys]
        accepted.extend(options_model.model_fields)
        problems: list[tuple[Loc, str]] = []
        for detail in error.errors(include_url=False):
            loc, message = describe(detail, lambda _loc: accepted)
            if detail["type"] == "extra_forbidden":
                what = f"unknown key for backend {backend!r}"
                message = unknown_key_message(loc[-1], accepted, what)
            problems.append((loc, message))
        return problems
    return []


def report(value: _T, problems: list[tuple[Loc, str]], info: ValidationInfo, at: Loc = ()) -> _T:
    """Hand ``problems`` (under ``at``) to the loader's sink, or raise them all as one."""
    if not problems:
        return value
    sink = info.context.get(SINK) if isinstance(info.context, dict) else None
    if isinstance(sink, list):
        sink.extend(((*at, *loc), message) for loc, message in problems)
        return value
    raise ValueError("; ".join(f"{dotted((*at, *loc))}: {message}" for loc, message in problems))
