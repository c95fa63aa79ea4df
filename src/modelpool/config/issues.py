"""Helpers for ``modelpool.config``: YAML positions and pydantic errors made readable.

Pydantic reports a location tuple and a terse message; people need the dotted key
path, the line in their file, what was expected and, for a typo, the likely intended
key. Everything here works on plain data so that it can be tested without a config.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml
from pydantic_core import ErrorDetails

from modelpool.errors import ConfigIssue

Loc = tuple[str | int, ...]
"""A key path into a config mapping, e.g. ``("models", "smollm2", "ttl")``."""

KnownKeys = Callable[[Loc], Sequence[str]]
"""Given the path of a mapping, the keys it accepts (for did-you-mean hints)."""

_SCALARS = (str, int, float, bool, type(None))


def dotted(loc: Loc) -> str:
    """``("pool", "budgets", "cuda:0")`` -> ``"pool.budgets.cuda:0"``."""
    return ".".join(str(part) for part in loc)


def shown(value: object) -> str:
    """A short description of a bad value: its repr for scalars, its kind otherwise."""
    if isinstance(value, _SCALARS):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """`` (did you mean 'memory'?)`` or ``""`` when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(candidates)), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_message(key: object, known: Sequence[str], what: str = "unknown key") -> str:
    """The message for a key nobody accepts, with a suggestion or the accepted keys."""
    hint = did_you_mean(key, known)
    if hint or not known:
        return f"{what}{hint}"
    return f"{what}; expected one of: {', '.join(sorted(known))}"


def yaml_syntax_issue(error: yaml.YAMLError, source: str) -> ConfigIssue:
    """One issue for a file that is not valid YAML, at the line the parser stopped."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = error.problem or "syntax error"
        context = f" ({error.context})" if error.context else ""
        line = mark.line + 1 if mark is not None else None
        return ConfigIssue(source, "", f"invalid YAML: {what}{context}", line)
    return ConfigIssue(source, "", f"invalid YAML: {error}")


def line_of(root: yaml.Node | None, loc: Loc, *, exact: bool = False) -> int | None:
    """1-based line of the key at ``loc`` in a composed YAML tree.

    When the path leaves the tree (a missing key, a value set by an env override), the
    line of the deepest key found is returned instead, or ``None`` with ``exact``.
    """
    if root is None:
        return None
    node: yaml.Node = root
    line: int | None = None
    for part in loc:
        child = _child(node, part)
        if child is None:
            return None if exact else line
        line, node = child
    return line


def _child(node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        found = None
        # The last of several equal keys wins, as it does when PyYAML builds the dict.
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found = (key.start_mark.line + 1, value)
        return found
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        item: yaml.Node = node.value[part]
        return item.start_mark.line + 1, item
    return None


def duplicate_keys(root: yaml.Node | None, source: str) -> list[ConfigIssue]:
    """Keys given twice in one mapping: PyYAML silently keeps the last, hiding a model."""
    issues: list[ConfigIssue] = []

    def walk(node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    message = f"duplicate key (first given on line {first[key.value]})"
                    issues.append(ConfigIssue(source, dotted((*loc, key.value)), message, line))
                else:
                    first[key.value] = line
                walk(value, (*loc, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index))

    if root is not None:
        walk(root, ())
    return issues


def clean_loc(loc: Sequence[str | int]) -> Loc:
    """Drop pydantic's markers (``[key]`` for dict keys) that are not config keys."""
    return tuple(part for part in loc if part != "[key]")


def describe(error: ErrorDetails, known_keys: KnownKeys) -> tuple[Loc, str]:
    """Turn one pydantic error into a key path and a message a person can act on."""
    loc = clean_loc(error["loc"])
    kind = error["type"]
    message = error["msg"]
    value: Any = error.get("input")
    if kind == "extra_forbidden":
        return loc, unknown_key_message(loc[-1] if loc else "", known_keys(loc[:-1]))
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "invalid_key":
        return loc, f"keys must be strings, got {shown(value)}"
    if kind in ("value_error", "assertion_error"):
        # Our own validators raise ValueError with a complete sentence; keep only it.
        return loc, message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping, got {shown(value)}"
    if message.startswith("Input should be "):
        rest = message.removeprefix("Input should be ")
        verb = "must be" if rest.startswith(("greater", "less")) else "expected"
        got = "" if ", got " in rest else f", got {shown(value)}"
        return loc, f"{verb} {rest}{got}"
    return loc, message
