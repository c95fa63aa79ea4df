"""What a model can answer is known from its backend kind, before anything loads."""

from __future__ import annotations

import pytest

from modelpool.http.served import ENDPOINTS, serves
from modelpool.plugins import BACKENDS


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("backend", ["process", "llamacpp", "a-plugin-nobody-knows"])
def test_process_models_and_unknown_kinds_are_let_through(backend: str, endpoint: str) -> None:
    assert serves(backend, endpoint)


@pytest.mark.parametrize("backend", ["torch", "callable", "fake"])
def test_in_process_models_serve_embeddings_only(backend: str) -> None:
    assert serves(backend, "embeddings")
    assert not serves(backend, "chat/completions")
    assert not serves(backend, "completions")


def test_every_built_in_backend_is_decided() -> None:
    from modelpool.http.served import SERVED_BY_BACKEND

    assert set(BACKENDS.names()) <= set(SERVED_BY_BACKEND)
