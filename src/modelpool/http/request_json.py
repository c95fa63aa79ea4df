"""``json_object``: a request body read as a JSON object, or a 400 that says why not.

Stricter than ``json.loads`` where a client's text could hurt the server or a model's
server: ``NaN`` and ``Infinity`` are not JSON (RFC 8259) and break strict parsers
upstream, and nesting is bounded (``MAX_DEPTH``) because Python's parser recurses: a
body of a thousand ``[`` would otherwise raise ``RecursionError`` and answer 500.
"""

from __future__ import annotations

import json
from typing import Any

from modelpool.http.errors import ApiError

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; a chat request with tool schemas
nests about ten levels."""


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` parsed as a JSON object; ``ApiError`` 400 naming what is wrong and where."""
    try:
        payload = json.loads(body, parse_constant=_no_constants)
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            f"The request body is not valid JSON: {error.msg} "
            f"(line {error.lineno}, column {error.colno})",
        ) from None
    except UnicodeDecodeError:
        raise ApiError(400, "The request body is not valid JSON: it is not UTF-8") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object")
    if depth(payload) > MAX_DEPTH:
        raise _too_deep()
    return payload


def depth(value: object) -> int:
    """Nesting depth of arrays and objects in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _no_constants(name: str) -> float:
    raise ApiError(400, f"The request body is not valid JSON: {name} is not a JSON number")


def _too_deep() -> ApiError:
    return ApiError(400, f"The request body nests arrays or objects deeper than {MAX_DEPTH}")
