"""``serves``: whether a model can answer a ``/v1`` endpoint, known before it is loaded.

Decided from the model's backend kind alone, so that a request that can only end in
400 never makes the pool evict a resident model and load the wrong one. A process
model (llama.cpp, vLLM...) answers through its own server: every endpoint goes there
and its server decides. An in-process model is answered here, and only embeddings
have an answer here (``local_models``). A backend kind from a plugin is not known:
it is let through, and its loaded object decides, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

ENDPOINTS = ("chat/completions", "completions", "embeddings")
"""The model endpoints under ``/v1``."""

IN_PROCESS = frozenset({"embeddings"})
"""What an in-process model can answer: ``local_models`` makes embeddings only."""

SERVED_BY_BACKEND: Mapping[str, frozenset[str]] = {
    "process": frozenset(ENDPOINTS),
    "llamacpp": frozenset(ENDPOINTS),
    "torch": IN_PROCESS,
    "callable": IN_PROCESS,
    "fake": IN_PROCESS,
}


def serves(backend: str, endpoint: str) -> bool:
    """Whether a model of ``backend`` kind may answer ``/v1/<endpoint>``."""
    return endpoint in SERVED_BY_BACKEND.get(backend, frozenset(ENDPOINTS))
