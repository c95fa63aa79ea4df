"""``served``: what a model answers under ``/v1``, known before it is loaded.

Decided from its config alone, so that a request that can only end in 400 never makes
the pool evict a resident model and load the wrong one, and so that every "not served"
is our own clear 400 rather than whatever the model's server says (llama.cpp answers
embeddings for a chat model with a 500). A model's ``endpoints:`` says it; without it,
its backend's default: llama.cpp serves chat and completions (its server makes
embeddings only when started with ``--embedding``), another server process or a
remote server all three (its server decides), and an in-process model embeddings only,
the one answer made here (``local_models``), whatever it declares. A backend kind from
a plugin is not known: it is let through, and its loaded object decides, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelpool.config import ModelSpec

ENDPOINTS = ("chat/completions", "completions", "embeddings")
"""The model endpoints under ``/v1``."""

NAMES: Mapping[str, str] = {
    "chat/completions": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
}
"""Each endpoint's name in ``endpoints:``, in ``ENDPOINTS``' order."""

ALL = tuple(NAMES.values())
IN_PROCESS = ("embeddings",)
"""What an in-process model can answer: ``local_models`` makes embeddings only."""

SERVED_BY_BACKEND: Mapping[str, tuple[str, ...]] = {
    "process": ALL,
    "remote": ALL,
    "llamacpp": ("chat", "completions"),
    "torch": IN_PROCESS,
    "callable": IN_PROCESS,
    "fake": IN_PROCESS,
}
"""What a model serves when its config does not say (names as in ``endpoints:``)."""

IN_PROCESS_KINDS = frozenset({"torch", "callable", "fake"})


def served(spec: ModelSpec) -> tuple[str, ...]:
    """The names (``chat``, ``completions``, ``embeddings``) of what ``spec`` serves."""
    declared = spec.endpoints
    if declared is None:
        return SERVED_BY_BACKEND.get(spec.backend, ALL)
    if spec.backend in IN_PROCESS_KINDS:
        return tuple(name for name in declared if name in IN_PROCESS)
    return declared


def serves(spec: ModelSpec, endpoint: str) -> bool:
    """Whether ``spec``'s model answers ``/v1/<endpoint>`` (``chat/completions``...)."""
    return NAMES[endpoint] in served(spec)
